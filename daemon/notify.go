package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/notify"
	"github.com/ckptd/ckptd/store"
)

// A workload may listen on an abstract socket to be told of its
// checkpoints (package notify): prepare before the freeze, sealed once a
// checkpoint that leaves it running is durable, restored after a restore.

// DefaultPrepareTimeout bounds a workload's answer to prepare.
const DefaultPrepareTimeout = 10 * time.Second

// notifyTimeout bounds the answers to sealed and restored, which fail
// nothing.
const notifyTimeout = 5 * time.Second

// notifyName is the socket a new workload is told of: in a namespace of
// its own the one name does for every copy; in the host's it carries the
// workload's name.
func notifyName(name string, s network.Spec) string {
	if s.Mode == network.Host {
		return "@ckptd-notify." + name
	}
	return "@ckptd-notify"
}

// notifiee is where t's workload listens, if it may.
func notifiee(t *store.Target) (notify.Workload, bool) {
	if t.Kind != store.KindWorkload || !notify.ValidName(t.Notify) {
		return notify.Workload{}, false
	}
	w := notify.Workload{Name: t.Notify}
	if t.Network != nil {
		w.NetNS = t.Network.NetNS
	}
	return w, true
}

// prepare tells t a freeze comes and returns what it answers; a workload
// that does not listen is not waited for.
func (d *Daemon) prepare(ctx context.Context, t *store.Target, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultPrepareTimeout
	}
	var p []byte
	if w, ok := notifiee(t); ok {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		var err error
		p, err = w.Prepare(wctx)
		cancel()
		if err != nil && !errors.Is(err, notify.ErrNotListening) {
			return nil, fmt.Errorf("%s did not get ready for its checkpoint (prepare, within %s): %w: %w", t.Name, timeout, err, errdefs.ErrFailedPrecondition)
		}
	}
	hp, err := d.runHook(ctx, t, notify.Prepare, timeout)
	if err != nil {
		return nil, fmt.Errorf("%s did not get ready for its checkpoint: %w: %w", t.Name, err, errdefs.ErrFailedPrecondition)
	}
	if p == nil {
		p = hp
	}
	return p, nil
}

// tellSealed tells a workload that still runs that checkpoint c is
// durable; a workload that does not hear it is logged, not failed.
func (d *Daemon) tellSealed(ctx context.Context, t *store.Target, c *store.Checkpoint) {
	w, ok := notifiee(t)
	if !ok || !d.alive(t) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	if err := w.Sealed(ctx, c.ID); err != nil && !errors.Is(err, notify.ErrNotListening) {
		d.log.Warn("tell a workload its checkpoint is sealed", "target", t.Key(), "checkpoint", c.Name, "err", err)
	}
	if _, err := d.runHook(ctx, t, notify.Sealed, notifyTimeout, hookEnv(c)...); err != nil {
		d.log.Warn("a workload's sealed hook", "target", t.Key(), "checkpoint", c.Name, "err", err)
	}
}

// tellRestored tells a restored workload where it came from, with what it
// answered prepare then; a failure is a warning of the restore.
func (d *Daemon) tellRestored(ctx context.Context, t *store.Target, c *store.Checkpoint) []string {
	w, ok := notifiee(t)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	var warnings []string
	if err := w.Restored(ctx, c.ID, c.AppState); err != nil && !errors.Is(err, notify.ErrNotListening) {
		d.log.Warn("tell a workload it was restored", "target", t.Key(), "checkpoint", c.Name, "err", err)
		warnings = append(warnings, fmt.Sprintf("it was not told it was restored: %v", err))
	}
	if _, err := d.runHook(ctx, t, notify.Restored, notifyTimeout, hookEnv(c)...); err != nil {
		d.log.Warn("a workload's restored hook", "target", t.Key(), "checkpoint", c.Name, "err", err)
		warnings = append(warnings, err.Error())
	}
	return warnings
}
