package daemon

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// resumeTree continues a tree restored stopped (a fenced migration): every
// process of it gets SIGCONT.
func (d *Daemon) resumeTree(t *store.Target) error {
	if !proc.Alive(t.PID, t.StartTime) {
		return fmt.Errorf("resume %s: pid %d: %w", t.Key(), t.PID, proc.ErrGone)
	}
	var errs []error
	for _, pid := range proc.Tree(t.PID) {
		if err := unix.Kill(pid, unix.SIGCONT); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("resume pid %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// Resolve settles a migrated target in doubt: resume runs it (the operator
// found the source's copy gone), otherwise it is killed (the source's copy
// runs). Its checkpoint stays either way.
func (d *Daemon) Resolve(ctx context.Context, target string, resume bool) (*TargetStatus, error) {
	t, unlock, err := d.lockKnown(ctx, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t.InDoubt == "" {
		return nil, fmt.Errorf("%s is not a migration in doubt: %w", target, errdefs.ErrFailedPrecondition)
	}
	if resume {
		err = d.resumeTree(t)
	} else {
		err = proc.Signal(t.PID, t.StartTime, unix.SIGKILL)
		if errors.Is(err, proc.ErrGone) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", target, err)
	}
	d.log.Info("migration in doubt resolved", "target", t.Key(), "resumed", resume, "was", t.InDoubt)
	t.InDoubt = ""
	if err := d.store.PutTarget(ctx, t); err != nil {
		return nil, err
	}
	return d.status(t), nil
}
