package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// shutdownParallel is how many persisted targets a shutdown checkpoints
// at once: their dumps share the disk and the memory bandwidth.
const shutdownParallel = 2

// Persist marks a running workload or container to outlive reboots (on),
// or no longer (off: a checkpoint its last shutdown took stays, as any).
func (d *Daemon) Persist(ctx context.Context, target string, on bool) (*TargetStatus, error) {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return nil, err
	}
	if ref.Kind == store.KindProcess {
		return nil, fmt.Errorf("%s is a host process, which restores into its own PIDs and is no one's to restart after a reboot; persist workloads (ckptctl run) or containers: %w", target, errdefs.ErrInvalidArgument)
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
	if err := d.markPersisted(ctx, t.TargetRef); err != nil {
		return nil, err
	}
	return d.status(t), nil
}

// markPersisted records ref as persisted, keeping its place in the order
// if it already was.
func (d *Daemon) markPersisted(ctx context.Context, ref store.TargetRef) error {
	p := store.Persisted{Target: ref, Since: time.Now().UTC()}
	if cur, ok := d.persisted(ctx)[ref.Key()]; ok {
		p.Since = cur.Since
	}
	return d.store.PutPersisted(ctx, p)
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

// CheckpointPersisted is a shutdown's work: it checkpoints and stops every
// persisted target that runs, shutdownParallel at a time, until ctx ends.
// It returns how many it took and what failed; each failure is recorded
// with its target, which the reboot then loses.
func (d *Daemon) CheckpointPersisted(ctx context.Context) (int, error) {
	ps, err := d.store.Persisted(ctx)
	if err != nil {
		return 0, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken int
		errs  []error
	)
	slots := make(chan struct{}, shutdownParallel)
	for _, p := range ps {
		t, err := d.store.GetTarget(ctx, p.Target.Key())
		if err != nil || !d.alive(t) {
			continue // ended, or asleep: nothing runs to lose
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := d.checkpointForShutdown(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				taken++
			}
		}()
	}
	wg.Wait()
	return taken, errors.Join(errs...)
}

func (d *Daemon) checkpointForShutdown(ctx context.Context, p store.Persisted) error {
	start := time.Now()
	c, err := d.Create(ctx, CreateRequest{Target: refName(p.Target)})
	if err != nil {
		p.Checkpoint, p.Boot, p.Error = "", "", "its checkpoint at shutdown failed: "+errdefs.Message(err)
		d.log.Error("checkpoint a persisted target at shutdown", "target", p.Target.Key(), "err", err)
	} else {
		p.Checkpoint, p.Boot, p.Error = c.ID, d.store.Boot(), ""
		d.log.Info("checkpointed for shutdown", "target", p.Target.Key(), "checkpoint", c.Name, "took", time.Since(start))
	}
	if perr := d.store.PutPersisted(context.WithoutCancel(ctx), p); perr != nil {
		return errors.Join(err, perr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", refName(p.Target), err)
	}
	return nil
}

// restorePersisted, at start, restores the persisted targets a shutdown
// checkpointed and that no longer run, one by one in the order they were
// marked (a server before the client started after it). One that fails
// stays listed with the reason, its checkpoint kept for a restore by hand.
func (d *Daemon) restorePersisted(ctx context.Context) {
	ps, err := d.store.Persisted(ctx)
	if err != nil {
		d.log.Error("read the persisted targets", "err", err)
		return
	}
	for _, p := range ps {
		if p.Checkpoint == "" || ctx.Err() != nil {
			continue
		}
		if t, err := d.store.GetTarget(ctx, p.Target.Key()); err == nil && d.alive(t) {
			p.Checkpoint, p.Boot, p.Error = "", "", "" // restored by hand, or the stop was no shutdown
		} else {
			d.restoreForStart(ctx, &p)
		}
		if err := d.store.PutPersisted(context.WithoutCancel(ctx), p); err != nil {
			d.log.Error("record a persisted target's restore", "target", p.Target.Key(), "err", err)
		}
	}
}

func (d *Daemon) restoreForStart(ctx context.Context, p *store.Persisted) {
	start := time.Now()
	s, err := d.Restore(ctx, RestoreRequest{Checkpoint: p.Checkpoint})
	if err != nil {
		p.Error = "its restore at start failed: " + errdefs.Message(err)
		d.log.Error("restore a persisted target at start", "target", p.Target.Key(), "checkpoint", p.Checkpoint, "err", err)
		return
	}
	d.log.Info("restored at start", "target", s.Key(), "pid", s.PID, "checkpointed_in_boot", p.Boot,
		"boot_changed", p.Boot != d.store.Boot(), "took", time.Since(start))
	p.Checkpoint, p.Boot, p.Error = "", "", ""
}

// persistRestored clears what a shutdown left of key once it runs again,
// restored by hand after its restore at start failed.
func (d *Daemon) persistRestored(ctx context.Context, key string) {
	p, ok := d.persisted(ctx)[key]
	if !ok || p.Checkpoint == "" {
		return
	}
	p.Checkpoint, p.Boot, p.Error = "", "", ""
	if err := d.store.PutPersisted(context.WithoutCancel(ctx), p); err != nil {
		d.log.Error("record a persisted target restored", "target", key, "err", err)
	}
}
