package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/store"
)

// exitGone is how a target ended that ckptd did not see end: not its
// child, or it ended while ckptd was down.
const exitGone = "gone"

// keepExit records how t ended, so that a restarted ckptd, which no longer
// knows, says the same. A target busy with another operation (its lock
// held) is left for the next look.
func (d *Daemon) keepExit(ctx context.Context, t *store.Target, exit string) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	unlock, err := d.locks.Lock(lctx, t.Key())
	if err != nil {
		return
	}
	defer unlock()
	cur, err := d.store.GetTarget(ctx, t.Key())
	if err != nil || cur.PID != t.PID || cur.StartTime != t.StartTime || cur.Exit != "" {
		return // gone, or another incarnation by now
	}
	cur.Exit = exit
	if err := d.store.PutTarget(ctx, cur); err != nil {
		d.log.Warn("record how a target ended", "target", t.Key(), "exit", exit, "err", err)
	}
}

// exitOf is how t ended, if ckptd saw it end.
func (d *Daemon) exitOf(t *store.Target) (string, bool) {
	if d.sup == nil {
		return "", false
	}
	e, ok := d.sup.ExitOf(t.PID)
	return e.String(), ok
}

// Prune forgets the targets that ended: their records and the directories
// of their logs (a workload's, a restored container's). Their checkpoints
// stay. It returns the targets it forgot, as a user names them.
func (d *Daemon) Prune(ctx context.Context) ([]string, error) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return nil, err
	}
	var forgot []string
	caller := access.From(ctx)
	for _, t := range ts {
		if !caller.Owns(t.Owner) {
			continue
		}
		ok, err := d.forgetEnded(ctx, t.Key())
		if err != nil {
			return forgot, err
		}
		if ok {
			forgot = append(forgot, t.TargetRef.String())
		}
	}
	if len(forgot) > 0 {
		d.log.Info("ended targets forgotten", "targets", forgot)
	}
	return forgot, nil
}

// forgetEnded forgets the target with key if it ended, under its lock.
func (d *Daemon) forgetEnded(ctx context.Context, key string) (bool, error) {
	unlock, err := d.locks.Lock(ctx, key)
	if err != nil {
		return false, err
	}
	defer unlock()
	t, err := d.store.GetTarget(ctx, key)
	if err != nil || d.alive(t) || t.Hibernated() {
		return false, nil // forgotten meanwhile, running, or asleep
	}
	var dir string
	switch t.Kind {
	case store.KindWorkload:
		dir = d.store.Layout().Workload(t.Name)
	case store.KindContainer:
		if r, err := container.RefFromName(t.Name); err == nil && t.LogPath != "" {
			dir = d.store.Layout().Container(r.Namespace, r.ID)
		}
	}
	if err := d.store.DeleteTarget(ctx, key); err != nil {
		return false, err
	}
	if err := d.store.Unpersist(ctx, key); err != nil {
		return false, err
	}
	if err := d.forgetLimits(t); err != nil {
		d.log.Warn("remove a forgotten workload's cgroups", "target", t.Key(), "err", err)
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return true, fmt.Errorf("forget %s: remove its logs: %w", t.TargetRef, err)
		}
	}
	return true, nil
}
