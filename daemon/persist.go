package daemon

import (
	"context"
	"fmt"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// Persist marks a running workload or container to outlive reboots (on),
// or no longer (off: a checkpoint its last shutdown took stays, as any).
// Workloads marked with the same group are checkpointed at one instant,
// as a group, and restored together.
func (d *Daemon) Persist(ctx context.Context, target string, on bool, group string) (*TargetStatus, error) {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return nil, err
	}
	if ref.Kind == store.KindProcess {
		return nil, fmt.Errorf("%s is a host process, which restores into its own PIDs and is no one's to restart after a reboot; persist workloads (ckptctl run) or containers: %w", target, errdefs.ErrInvalidArgument)
	}
	if group != "" && ref.Kind != store.KindWorkload {
		return nil, fmt.Errorf("--group %s: groups take workloads; a container checkpoints through its runtime, which freezes it on its own: %w", group, errdefs.ErrInvalidArgument)
	}
	if group != "" {
		if err := store.ValidateName(group); err != nil {
			return nil, fmt.Errorf("--group: %w", err)
		}
	}
	if !on {
		t, unlock, err := d.lockKnown(ctx, target)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := d.store.Unpersist(ctx, t.Key()); err != nil {
			return nil, err
		}
		return d.status(t), nil
	}
	t, unlock, err := d.lockLive(ctx, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.recordTarget(ctx, t); err != nil { // a container ckptd had not met
		return nil, err
	}
	p, err := d.store.Persist(ctx, t.TargetRef, group)
	if err != nil {
		return nil, err
	}
	s := d.status(t)
	s.Persisted = &p
	return s, nil
}

// persisted maps the persisted targets by key; nil when unreadable (logged).
func (d *Daemon) persisted(ctx context.Context) map[string]store.Persisted {
	ps, err := d.store.Persisted(ctx)
	if err != nil {
		d.log.Error("read the persisted targets", "err", err)
		return nil
	}
	m := make(map[string]store.Persisted, len(ps))
	for _, p := range ps {
		m[p.Target.Key()] = p
	}
	return m
}

// persistRestored clears what a shutdown left of key once it runs again,
// restored by hand after its restore at start failed.
func (d *Daemon) persistRestored(ctx context.Context, key string) {
	p, ok := d.persisted(ctx)[key]
	if !ok || p.Checkpoint == "" {
		return
	}
	p.Checkpoint, p.Boot, p.Error, p.ShutdownGroup = "", "", "", ""
	if err := d.store.PutPersisted(context.WithoutCancel(ctx), p); err != nil {
		d.log.Error("record a persisted target restored", "target", key, "err", err)
	}
}
