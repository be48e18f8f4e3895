package term

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
)

// Conn is an attached client's connection to a session's holder.
type Conn struct {
	conn net.Conn
	r    *bufio.Reader
	sock string
}

// ErrDropped ends the output of a client the holder dropped for falling
// more than ClientQueueBytes behind, while the session runs on.
var ErrDropped = fmt.Errorf("this client fell more than %d MiB behind the session's output and was dropped; the session keeps running (attach again): %w",
	ClientQueueBytes>>20, errdefs.ErrFailedPrecondition)

func dial(sock string, first byte) (*Conn, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("the session's terminal holder does not answer (%v): %w", err, errdefs.ErrUnavailable)
	}
	if err := WriteFrame(c, first, nil); err != nil {
		c.Close()
		return nil, err
	}
	return &Conn{conn: c, r: bufio.NewReader(c), sock: sock}, nil
}

// Attach joins the session whose holder listens on sock: Output first
// returns its scrollback, then what it writes.
func Attach(sock string) (*Conn, error) { return dial(sock, FrameReplay) }

// Input types p into the session.
func (c *Conn) Input(p []byte) error { return WriteFrame(c.conn, FrameData, p) }

// Resize sets the session's window size.
func (c *Conn) Resize(s Size) error { return WriteFrame(c.conn, FrameResize, s.bytes()) }

// Output returns the session's next output; io.EOF once the session
// ended, ErrDropped if the holder dropped this client.
func (c *Conn) Output() ([]byte, error) {
	for {
		kind, p, err := ReadFrame(c.r)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A session that ended has closed its socket first.
			if _, qerr := Query(c.sock); qerr == nil {
				return nil, ErrDropped
			}
		}
		if err != nil {
			return nil, err
		}
		if kind == FrameData {
			return p, nil
		}
	}
}

func (c *Conn) Close() error { return c.conn.Close() }

// Query asks the holder on sock for its session's window size and
// attached clients.
func Query(sock string) (Status, error) {
	c, err := dial(sock, FrameQuery)
	if err != nil {
		return Status{}, err
	}
	defer c.Close()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := WriteFrame(c.conn, FrameStatus, nil); err != nil {
		return Status{}, err
	}
	kind, p, err := ReadFrame(c.r)
	if err != nil {
		return Status{}, fmt.Errorf("the session's terminal holder: %w", err)
	}
	if kind != FrameStatus {
		return Status{}, fmt.Errorf("the session's terminal holder answered %q", kind)
	}
	return statusOf(p)
}

// Scrollback is what the session at sock keeps of its last output.
func Scrollback(sock string) ([]byte, error) {
	c, err := dial(sock, FrameScrollback)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	var out []byte
	for {
		kind, p, err := ReadFrame(c.r)
		switch {
		case err != nil:
			return nil, fmt.Errorf("terminal scrollback: %w", err)
		case kind == FrameScrollback:
			return out, nil
		case kind == FrameData && len(out)+len(p) <= ScrollbackBytes:
			out = append(out, p...)
		default:
			return nil, fmt.Errorf("terminal scrollback: unexpected frame %q", kind)
		}
	}
}

// Session is a new terminal: Slave goes to the process tree (a launch's
// stdio, or CRIU's inherited tty), and is closed by the caller after.
type Session struct {
	Slave     *os.File
	HolderPID int
	RunPID    int // the process the holder started for a Run
}

// Run is a program the holder starts inside the session, as a child of
// its own with the terminal as its controlling terminal and stdin, in a
// process group of its own, with Files as its descriptors 3, 4, ...: a
// CRIU restoring a shell job puts the job into its own session, whose
// leader must outlive CRIU, as the job's shell did.
type Run struct {
	Argv  []string
	Files []*os.File
}

// Spawn starts argv with stderr and with files as its descriptors 3, 4,
// ..., in its own session, and returns its PID (ckptd's supervisor, which
// reaps it).
type Spawn func(argv []string, stderr *os.File, files []*os.File) (int, error)

// HolderLog is the holder's own log, beside its socket.
const HolderLog = "holder.log"

// Options shape a new session.
type Options struct {
	Size Size
	Run  *Run // started inside the session, when set
	// Scrollback is a file whose last ScrollbackBytes start the session's
	// scrollback (a restored copy's, saved at its checkpoint); optional.
	Scrollback string
}

// Start opens a pseudo-terminal of o.Size, hands its master side to a new
// holder (holderBin) listening on sock and logging to logPath, and
// returns the slave side once the holder serves.
func Start(holderBin, sock, logPath string, o Options, spawn Spawn) (*Session, error) {
	size, run := o.Size, o.Run
	master, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open a pseudo-terminal: %w", err)
	}
	defer master.Close() // the holder has its own copy
	if size.Rows > 0 && size.Cols > 0 {
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Rows, Col: size.Cols}); err != nil {
			slave.Close()
			return nil, err
		}
	}
	os.Remove(sock)
	errs, err := os.OpenFile(filepath.Join(filepath.Dir(sock), HolderLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		slave.Close()
		return nil, err
	}
	defer errs.Close()
	argv, files := []string{holderBin, "--socket", sock, "--log", logPath}, []*os.File{master}
	if o.Scrollback != "" {
		argv = append(argv, "--scrollback", o.Scrollback)
	}
	var report *os.File
	if run != nil {
		var w *os.File
		if report, w, err = os.Pipe(); err != nil {
			slave.Close()
			return nil, err
		}
		defer report.Close()
		defer w.Close()
		argv = append(append(argv, "--run", "--run-files", fmt.Sprint(len(run.Files)), "--"), run.Argv...)
		files = append(append(files, slave, w), run.Files...)
	}
	pid, err := spawn(argv, errs, files)
	if err != nil {
		slave.Close()
		return nil, fmt.Errorf("start the terminal holder: %w", err)
	}
	s := &Session{Slave: slave, HolderPID: pid}
	if run != nil {
		if s.RunPID, err = readRunPID(report, files[2], errs.Name()); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			slave.Close()
			return nil, err
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			unix.Kill(pid, unix.SIGKILL)
			slave.Close()
			return nil, fmt.Errorf("the terminal holder did not start listening on %s: %w", sock, errdefs.ErrUnavailable)
		}
	}
}

// Key is CRIU's name for the terminal slave: the tree's tty, external to
// its checkpoint ("tty[rdev:dev]", as --external and inherit_fd take it).
func Key(slave *os.File) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(slave.Fd()), &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("tty[%x:%x]", st.Rdev, st.Dev), nil
}

// Sessions starts and reaches the terminal sessions of named workloads.
type Sessions struct {
	holderBin string
	socket    func(name string) string
	spawn     Spawn
}

// NewSessions makes sessions whose holders are holderBin, listening on
// socket(name), started by spawn.
func NewSessions(holderBin string, socket func(name string) string, spawn Spawn) *Sessions {
	return &Sessions{holderBin: holderBin, socket: socket, spawn: spawn}
}

// Start opens session name, logging to logPath.
func (s *Sessions) Start(name, logPath string, o Options) (*Session, error) {
	if _, err := os.Stat(s.holderBin); err != nil {
		return nil, fmt.Errorf("terminal holder %s: %v: %w", s.holderBin, err, errdefs.ErrFailedPrecondition)
	}
	sock := s.socket(name)
	if len(sock) >= 108 {
		return nil, fmt.Errorf("terminal socket path %s is longer than a unix socket allows; use a shorter --root: %w", sock, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return nil, err
	}
	return Start(s.holderBin, sock, logPath, o, s.spawn)
}

// Attach joins workload name's session.
func (s *Sessions) Attach(name string) (*Conn, error) { return Attach(s.socket(name)) }

// Scrollback is what workload name's session keeps of its last output.
func (s *Sessions) Scrollback(name string) ([]byte, error) { return Scrollback(s.socket(name)) }

// Status is workload name's window size and attached clients.
func (s *Sessions) Status(name string) (Status, error) { return Query(s.socket(name)) }
