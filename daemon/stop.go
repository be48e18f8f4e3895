package daemon

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// DefaultStopTimeout is how long stop waits after SIGTERM (Podman's 10 s).
const DefaultStopTimeout = 10 * time.Second

// Stop ends a target as Kill may: SIGTERM, then SIGKILL if it still runs
// after timeout (0: DefaultStopTimeout). A workload's pid 1 takes SIGTERM
// only if it handles it. It reports whether SIGKILL was needed.
func (d *Daemon) Stop(ctx context.Context, target string, timeout time.Duration) (killed bool, err error) {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return false, err
	}
	t, err := d.store.GetTarget(ctx, ref.Key())
	if err != nil {
		return false, fmt.Errorf("%s: ckptd ends only what it launched or restored: %w", target, err)
	}
	if t.Restart != nil {
		d.halt(t.Key(), true) // and between two restarts, the next is off
	}
	if err := d.Kill(ctx, target, int(unix.SIGTERM)); err != nil {
		if t.Restart != nil && errdefs.IsFailedPrecondition(err) && !d.alive(t) {
			return false, nil
		}
		return false, err
	}
	if d.waitGone(ctx, t.PID, t.StartTime, timeout) {
		return false, nil
	}
	if err := d.Kill(ctx, target, int(unix.SIGKILL)); err != nil && !errdefs.IsFailedPrecondition(err) {
		return true, err // not running any more: it ended on its own meanwhile
	}
	if !d.waitGone(ctx, t.PID, t.StartTime, timeout) {
		return true, fmt.Errorf("%s outlived SIGKILL for %s: %w", target, timeout, errdefs.ErrUnavailable)
	}
	return true, nil
}

// waitGone waits until the process pid (started at start) is gone.
func (*Daemon) waitGone(ctx context.Context, pid int, start uint64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if !proc.Alive(pid, start) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}
