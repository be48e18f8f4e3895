package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/term"
)

// Terminals gives workloads terminal sessions that outlive ckptd;
// *term.Sessions is the real one.
type Terminals interface {
	Start(name, logPath string, size term.Size) (*term.Session, error)
	Attach(name string) (*term.Conn, error)
	Status(name string) (term.Status, error)
}

// startTerminal opens workload name's session and returns the slave side
// for its tree, and the record of it.
func (d *Daemon) startTerminal(name, logPath string, size term.Size) (*term.Session, *store.Terminal, error) {
	if d.terms == nil {
		return nil, nil, fmt.Errorf("this ckptd has no terminal holder: %w", errdefs.ErrFailedPrecondition)
	}
	s, err := d.terms.Start(name, logPath, size)
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

// Attach joins the terminal session of workload name.
func (d *Daemon) Attach(ctx context.Context, name string) (*term.Conn, error) {
	t, err := d.workload(ctx, name)
	if err != nil {
		return nil, err
	}
	if t.Terminal == nil {
		return nil, fmt.Errorf("workload %s has no terminal; start it with 'ckptctl run -t' to attach to it: %w", name, errdefs.ErrFailedPrecondition)
	}
	if !d.alive(t) {
		return nil, fmt.Errorf("workload %s is not running: %w", name, errdefs.ErrFailedPrecondition)
	}
	return d.terms.Attach(name)
}

// terminalAtCheckpoint is what a checkpoint of t records of its terminal:
// CRIU's key, and the window size now.
func (d *Daemon) terminalAtCheckpoint(t store.TargetRef) *store.Terminal {
	if t.Terminal == nil {
		return nil
	}
	rec := *t.Terminal
	if d.terms == nil {
		return &rec
	}
	if st, err := d.terms.Status(t.Name); err == nil {
		rec.Rows, rec.Cols = st.Size.Rows, st.Size.Cols
	} else {
		d.log.Warn("terminal size at checkpoint unknown", "target", t.Key(), "err", err)
	}
	return &rec
}

// withTerminal marks t's terminal, which its holder keeps, external to
// the dump.
func withTerminal(o dumper.Options, t store.TargetRef) dumper.Options {
	if t.Terminal != nil {
		o.External = append(o.External, t.Terminal.Key)
	}
	return o
}

// restoreTerminal gives a restored copy of a terminal workload a new
// session of the saved size, and returns its slave side, for CRIU in
// place of the old one; the caller closes it once the restore is done.
func (d *Daemon) restoreTerminal(c *store.Checkpoint, ref *store.TargetRef, logPath string) (*os.File, error) {
	saved := c.Target.Terminal
	s, rec, err := d.startTerminal(ref.Name, logPath, term.Size{Rows: saved.Rows, Cols: saved.Cols})
	if err != nil {
		return nil, err
	}
	ref.Terminal = rec
	return s.Slave, nil
}
