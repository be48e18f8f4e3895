// Package dumper freezes a process tree and writes its state with CRIU.
package dumper

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"github.com/checkpoint-restore/go-criu/v8/stats"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// Files CRIU writes into the work directory of a dump.
const (
	LogFile   = "dump.log"
	StatsFile = "stats-dump"
)

// Options are the CRIU dump switches ckptd exposes.
type Options struct {
	LeaveRunning   bool   // resume the tree after the dump instead of killing it
	TCPEstablished bool   // dump established TCP connections
	FileLocks      bool   // dump file locks
	ExtUnixSk      bool   // allow unix sockets connected outside the tree
	ShellJob       bool   // the tree is a shell job (shares session/tty)
	LinkRemap      bool   // link files unlinked while open back for the dump
	GhostLimit     uint32 // largest deleted open file kept (bytes; 0: CRIU's default)
	ConfigFile     string // CRIU configuration file; empty: the daemon's
	// External names resources outside the tree that a restore hands
	// back (CRIU's --external: a terminal is "tty[rdev:dev]").
	External []string
}

// pageServerFD is the page server socket's descriptor in CRIU: the
// first of criu.Call.Files.
const pageServerFD = 4

// Request is one dump.
type Request struct {
	PID     int
	Dir     string // images directory; must exist and be empty
	WorkDir string // CRIU's log and statistics go here, apart from the images
	Options Options
	// PageServer, when set, is a connected socket to a CRIU page server
	// that receives the memory pages instead of Dir. CRIU gets it as a
	// descriptor (and it is closed here once CRIU has it): no listener is
	// open that another local user could reach first.
	PageServer *os.File
	// Lazy dumps for post-copy: the pages stay in the frozen tree, and
	// after Commit CRIU serves them on PageServer to a remote lazy-pages
	// daemon until it has them all; only then is the tree killed. If the
	// stream breaks first, CRIU resumes the tree.
	Lazy bool
	// FreezeCgroup is the tree's freezer cgroup, which the caller froze
	// (package freezer): CRIU seizes the tree there and leaves the cgroup
	// frozen when it lets the tree go, so that a group of trees stays
	// stopped until the caller thaws it. Only with LeaveRunning.
	FreezeCgroup string
	// Commit runs while the tree is still frozen and every image is written.
	// When it returns nil the tree is killed (or resumed with LeaveRunning);
	// when it fails, or ckptd dies before it returns, CRIU resumes the tree
	// as it was. This is what makes a checkpoint durable before its source
	// is gone.
	Commit func() error
}

// Result is what a successful dump reports.
type Result struct {
	Stats   *stats.DumpStatsEntry
	LogPath string
}

// Dumper runs CRIU dumps.
type Dumper struct {
	bin criu.Binary
	log *slog.Logger
}

func New(bin criu.Binary, log *slog.Logger) *Dumper { return &Dumper{bin: bin, log: log} }

// Dump checkpoints the tree rooted at req.PID into req.Dir.
func (d *Dumper) Dump(ctx context.Context, req Request) (Result, error) {
	logPath := filepath.Join(req.WorkDir, LogFile)
	as, err := checkTarget(req.PID)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.Open(req.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("open images dir: %w", err)
	}
	defer dir.Close()
	work, err := os.Open(req.WorkDir)
	if err != nil {
		return Result{}, fmt.Errorf("open work dir: %w", err)
	}
	defer work.Close()

	opts := &rpc.CriuOpts{
		ImagesDirFd:    ptr(int32(dir.Fd())),
		WorkDirFd:      ptr(int32(work.Fd())),
		Pid:            ptr(int32(req.PID)),
		LogFile:        ptr(LogFile),
		LogLevel:       ptr(int32(4)),
		LeaveRunning:   ptr(req.Options.LeaveRunning),
		TcpEstablished: ptr(req.Options.TCPEstablished),
		FileLocks:      ptr(req.Options.FileLocks),
		ExtUnixSk:      ptr(req.Options.ExtUnixSk),
		ShellJob:       ptr(req.Options.ShellJob),
		LinkRemap:      ptr(req.Options.LinkRemap),
	}
	if !req.Options.TCPEstablished {
		// Nothing is in TCP repair, so nothing needs the network locked;
		// locking a namespace of its own runs iptables-restore twice
		// each way, about 60 ms of a restore here.
		opts.NetworkLock = rpc.CriuNetworkLockMethod_SKIP.Enum()
	}
	if req.Options.GhostLimit > 0 {
		opts.GhostLimit = ptr(req.Options.GhostLimit)
	}
	opts.External = req.Options.External
	if req.FreezeCgroup != "" {
		opts.FreezeCgroup = ptr(req.FreezeCgroup)
	}
	if cfg := cmp.Or(req.Options.ConfigFile, d.bin.ConfigFile); cfg != "" {
		opts.ConfigFile = ptr(cfg)
	}
	var files []*os.File
	if ps := req.PageServer; ps != nil {
		opts.Ps = &rpc.CriuPageServerInfo{Fd: ptr(int32(pageServerFD))}
		files = append(files, ps)
	}
	timeout := d.bin.Deadline(proc.TreeRSS(req.PID))
	if req.Lazy {
		if err := lazyOptions(opts, req.WorkDir); err != nil {
			return Result{}, err
		}
		// Serving pages counts against the watchdog, and a killed CRIU lets
		// the tree run while the destination's copy runs too. The stream's
		// progress is bounded by the caller; this only catches a stuck CRIU.
		timeout = 2*timeout + 10*time.Minute
	}
	stoppedBefore := stopped(req.PID)
	d.log.Debug("criu dump", "pid", req.PID, "dir", req.Dir, "timeout", timeout)
	_, err = d.bin.Run(ctx, criu.Call{
		Op: "dump", Type: rpc.CriuReqType_DUMP, Opts: opts, LogPath: logPath, Timeout: timeout,
		Keys: criu.DumpKeys(req.PID), Files: files, Handoff: true, As: as,
		Notify: func(script string, _ int32) error {
			if script != "post-dump" {
				return nil
			}
			if as != nil {
				// What CRIU wrote as the tree's user becomes root's, as the
				// rest of the store is, before the commit publishes it.
				if err := chownToRoot(req.Dir); err != nil {
					return err
				}
			}
			if req.Commit != nil {
				return req.Commit()
			}
			return nil
		},
	})
	if err != nil {
		// CRIU and all it started are gone: nothing traces the tree now.
		d.resumeIfLeftStopped(req.PID, stoppedBefore)
		var nerr *criu.NotifyError
		if errors.As(err, &nerr) {
			return Result{}, nerr.Err
		}
		return Result{}, err
	}
	if as != nil {
		if err := chownToRoot(req.WorkDir); err != nil {
			return Result{LogPath: logPath}, err
		}
	}
	st, err := stats.CriuGetDumpStats(work)
	if err != nil {
		return Result{LogPath: logPath}, fmt.Errorf("read dump stats: %w", err)
	}
	return Result{Stats: st, LogPath: logPath}, nil
}

// lazyOptions asks for a lazy dump whose page server runs on the socket
// CRIU gets as descriptor pageServerFD. CRIU's RPC takes no page server
// socket for lazy dumps (it would listen on a port, on every address),
// so it is set in an RPC configuration file, read after the request's
// options, that also carries the daemon's own.
func lazyOptions(opts *rpc.CriuOpts, workDir string) error {
	conf := ""
	if opts.ConfigFile != nil {
		data, err := os.ReadFile(*opts.ConfigFile)
		if err != nil {
			return fmt.Errorf("read CRIU configuration: %w", err)
		}
		conf = string(data) + "\n"
	}
	path := filepath.Join(workDir, "lazy-dump.conf")
	if err := os.WriteFile(path, []byte(conf+fmt.Sprintf("ps-socket %d\n", pageServerFD)), 0o600); err != nil {
		return err
	}
	opts.ConfigFile, opts.Ps, opts.LazyPages = ptr(path), nil, ptr(true)
	return nil
}

func chownToRoot(dir string) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 0, 0)
	})
}

// checkTarget refuses what cannot be dumped, and says whom CRIU must run
// as (nil: root).
func checkTarget(pid int) (*criu.User, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w", pid, errdefs.ErrInvalidArgument)
	}
	if pid == os.Getpid() {
		return nil, fmt.Errorf("pid %d is ckptd itself: %w", pid, errdefs.ErrInvalidArgument)
	}
	if !proc.Alive(pid, 0) {
		return nil, fmt.Errorf("process %d: %w", pid, errdefs.ErrNotFound)
	}
	// CRIU reads every task's resource limits with prlimit, which needs
	// matching uids and gids or CAP_SYS_RESOURCE ("Can't get rlimit").
	p, uid, foreign := proc.ForeignUID(pid)
	if !foreign || proc.HasSysResource() {
		return nil, nil
	}
	if u, g, ok := proc.TreeOwner(pid); ok {
		return &criu.User{UID: uint32(u), GID: uint32(g)}, nil
	}
	return nil, fmt.Errorf("process %d runs as uid %d while others of its tree do not, and ckptd lacks CAP_SYS_RESOURCE here, which CRIU needs to read resource limits across users: %w",
		p, uid, errdefs.ErrFailedPrecondition)
}

// stopped returns the PIDs of the tree with a thread in stopped state.
func stopped(root int) map[int]bool {
	out := map[int]bool{}
	for _, pid := range proc.Tree(root) {
		for _, s := range proc.ThreadStates(pid) {
			if s == 'T' || s == 't' {
				out[pid] = true
			}
		}
	}
	return out
}

// resumeIfLeftStopped is the safety net for a CRIU that died while the tree
// was frozen: tasks it stopped and that were running before get SIGCONT.
func (d *Dumper) resumeIfLeftStopped(root int, before map[int]bool) {
	for pid := range stopped(root) {
		if before[pid] {
			continue
		}
		d.log.Warn("process left stopped by a failed dump; resuming it", "pid", pid)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			d.log.Error("resume after failed dump", "pid", pid, "err", err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
