package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/term"
)

// Terminals gives workloads terminal sessions that outlive ckptd;
// *term.Sessions is the real one. Sessions are named by sessionName.
type Terminals interface {
	Start(name, logPath string, o term.Options) (*term.Session, error)
	Attach(name string) (*term.Conn, error)
	Status(name string) (term.Status, error)
	Scrollback(name string) ([]byte, error)
}

// sessionName names t's terminal session: a workload's name, or pid/N for
// a host process (see store.Layout.TerminalSocket).
func sessionName(t store.TargetRef) string {
	if t.Kind == store.KindProcess {
		return fmt.Sprintf("pid/%d", t.PID)
	}
	return t.Name
}

// startTerminal opens workload name's session, its scrollback started
// from the file scrollback ("" for none), and returns the slave side for
// its tree, and the record of it.
func (d *Daemon) startTerminal(name, logPath string, size term.Size, scrollback string) (*term.Session, *store.Terminal, error) {
	if d.terms == nil {
		return nil, nil, errNoHolder
	}
	s, err := d.terms.Start(name, logPath, term.Options{Size: size, Scrollback: scrollback})
	if err != nil {
		return nil, nil, err
	}
	key, err := term.Key(s.Slave)
	if err != nil {
		s.Slave.Close()
		return nil, nil, err
	}
	return s, &store.Terminal{Key: key, Rows: size.Rows, Cols: size.Cols}, nil
}

var errNoHolder = fmt.Errorf("this ckptd has no terminal holder: %w", errdefs.ErrFailedPrecondition)

// Attach joins the terminal session of target: a workload's name, or the
// PID of a shell job ckptd restored.
func (d *Daemon) Attach(ctx context.Context, target string) (*term.Conn, error) {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return nil, err
	}
	t, err := d.store.GetTarget(ctx, ref.Key())
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if t == nil || t.Terminal == nil {
		return nil, fmt.Errorf("%s has no terminal ckptd holds; start it with 'ckptctl run -t' to attach to it: %w", target, errdefs.ErrFailedPrecondition)
	}
	if !d.alive(t) {
		return nil, fmt.Errorf("%s is not running: %w", target, errdefs.ErrFailedPrecondition)
	}
	conn, err := d.terms.Attach(sessionName(t.TargetRef))
	if err != nil {
		// Its holder is gone, not ckptd: the client must not say "lost ckptd".
		return nil, fmt.Errorf("%s: %s: %w", target, errdefs.Message(err), errdefs.ErrFailedPrecondition)
	}
	return conn, nil
}

// terminalAtCheckpoint is what a checkpoint of t records of its terminal,
// when the dump leaves it out as external: CRIU's key, and the window
// size now. A shell job's terminal is its session's, not external.
func (d *Daemon) terminalAtCheckpoint(t store.TargetRef) *store.Terminal {
	if t.Terminal == nil || t.Terminal.Key == "" {
		return nil
	}
	rec := *t.Terminal
	if d.terms == nil {
		return &rec
	}
	if st, err := d.terms.Status(sessionName(t)); err == nil {
		rec.Rows, rec.Cols = st.Size.Rows, st.Size.Cols
	} else {
		d.log.Warn("terminal size at checkpoint unknown", "target", t.Key(), "err", err)
	}
	return &rec
}

// saveScrollback keeps what t's terminal session shows now in dir, the
// checkpoint's staging directory: a copy restored from it shows the same
// (its prompt, say) to the first client that attaches. Without it a
// checkpoint is still whole, so a failure is only logged.
func (d *Daemon) saveScrollback(t store.TargetRef, dir string) {
	if t.Terminal == nil || t.Terminal.Key == "" || d.terms == nil {
		return
	}
	p, err := d.terms.Scrollback(sessionName(t))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, store.ScrollbackFile), p, 0o600)
	}
	if err != nil {
		d.log.Warn("terminal scrollback not saved with the checkpoint", "target", t.Key(), "err", err)
	}
}

// withTerminal marks t's terminal, which its holder keeps, external to
// the dump.
func withTerminal(o dumper.Options, t store.TargetRef) dumper.Options {
	if t.Terminal != nil && t.Terminal.Key != "" {
		o.External = append(o.External, t.Terminal.Key)
	}
	return o
}

// restoreTerminal gives a restored copy of a terminal workload a new
// session of the saved size, and returns its slave side, for CRIU in
// place of the old one; the caller closes it once the restore is done.
func (d *Daemon) restoreTerminal(c *store.Checkpoint, ref *store.TargetRef, logPath string) (*os.File, error) {
	saved := c.Target.Terminal
	var scrollback string
	if _, ok := c.Files[store.ScrollbackFile]; ok {
		scrollback = filepath.Join(d.store.Dir(c.ID), store.ScrollbackFile)
	}
	s, rec, err := d.startTerminal(ref.Name, logPath, term.Size{Rows: saved.Rows, Cols: saved.Cols}, scrollback)
	if err != nil {
		return nil, err
	}
	ref.Terminal = rec
	return s.Slave, nil
}

// ledSession reports whether t is a shell job ckptd restored: its
// session's leader is its terminal's holder, outside its tree, so CRIU
// dumps it as a shell job whether or not the user says so.
func ledSession(t store.TargetRef) bool { return t.Terminal != nil && t.Terminal.Key == "" }

// shellJobSize is a restored shell job's window size when its images
// keep none, until a client attaches with its own.
var shellJobSize = term.Size{Rows: 24, Cols: 80}

// shellJobTerminal gives a restored shell job, whose terminal ckptd does
// not hold, a new session of its old terminal's size: CRIU puts the job
// into its own session (the job's shell's is gone) and makes the session's
// terminal the job's, and the session's leader must outlive the job, as
// its shell did. So CRIU runs under the new session's holder, which leads
// it. logPath is where the session's output goes ("" for a host process:
// beside its socket).
func (d *Daemon) shellJobTerminal(ref *store.TargetRef, imagesDir, logPath string) (criu.Launcher, error) {
	if d.terms == nil {
		return nil, errNoHolder
	}
	name := sessionName(*ref)
	if logPath == "" {
		logPath = d.store.Layout().TerminalLog(name)
	}
	size := shellJobSize
	if ws, ok, err := images.TerminalSize(imagesDir); err != nil {
		// CRIU reads the same image next and fails with the real cause.
		d.log.Warn("shell job's window size unreadable; using 24x80", "images", imagesDir, "err", err)
	} else if ok {
		size = term.Size{Rows: ws.Rows, Cols: ws.Cols}
	}
	ref.Terminal = &store.Terminal{Rows: size.Rows, Cols: size.Cols}
	return func(argv []string, files []*os.File) (int, error) {
		s, err := d.terms.Start(name, logPath, term.Options{Size: size, Run: &term.Run{Argv: argv, Files: files}})
		if err != nil {
			return 0, err
		}
		s.Slave.Close()
		return s.RunPID, nil
	}, nil
}
