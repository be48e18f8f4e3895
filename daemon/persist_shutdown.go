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

// shutdownParallel is how many checkpoints (of a target, or of a group) a
// shutdown takes at once: their dumps share the disk and the memory
// bandwidth.
const shutdownParallel = 2

// shutdownJob is one checkpoint a shutdown takes: of one persisted
// target, or of the running members of a persisted group, in the order
// they were marked.
type shutdownJob struct {
	group   string
	members []store.Persisted
}

// shutdownJobs groups the persisted targets that run into jobs.
func (d *Daemon) shutdownJobs(ctx context.Context, ps []store.Persisted) []*shutdownJob {
	var jobs []*shutdownJob
	groups := map[string]*shutdownJob{}
	for _, p := range ps {
		t, err := d.store.GetTarget(ctx, p.Target.Key())
		if err != nil || !d.alive(t) {
			continue // ended, or asleep: nothing runs to lose
		}
		if p.Group == "" {
			jobs = append(jobs, &shutdownJob{members: []store.Persisted{p}})
			continue
		}
		if j := groups[p.Group]; j != nil {
			j.members = append(j.members, p)
			continue
		}
		groups[p.Group] = &shutdownJob{group: p.Group, members: []store.Persisted{p}}
		jobs = append(jobs, groups[p.Group])
	}
	return jobs
}

// CheckpointPersisted is a shutdown's work: it checkpoints and stops every
// persisted target that runs, shutdownParallel checkpoints at a time,
// until ctx ends. It returns how many targets it took and what failed;
// each failure is recorded with its targets, which the reboot then loses.
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
	for _, j := range d.shutdownJobs(ctx, ps) {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := d.checkpointForShutdown(ctx, j)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				taken += len(j.members)
			}
		}()
	}
	wg.Wait()
	return taken, errors.Join(errs...)
}

// checkpointForShutdown takes j's checkpoint and records it, or why it
// failed, with each of its targets.
func (d *Daemon) checkpointForShutdown(ctx context.Context, j *shutdownJob) error {
	start := time.Now()
	taken, what, err := d.shutdownCheckpoint(ctx, j)
	if err != nil {
		d.log.Error("checkpoint persisted targets at shutdown", "what", what, "err", err)
		err = fmt.Errorf("%s: %w", what, err)
	} else {
		d.log.Info("checkpointed for shutdown", "what", what, "took", time.Since(start))
	}
	for i := range j.members {
		p := &j.members[i]
		p.Checkpoint, p.ShutdownGroup, p.Boot, p.Error = "", "", "", ""
		if err != nil {
			p.Error = "its checkpoint at shutdown failed: " + errdefs.Message(err)
		} else {
			p.Checkpoint, p.ShutdownGroup, p.Boot = taken[p.Target.Key()], taken[""], d.store.Boot()
		}
	}
	return errors.Join(err, d.store.PutPersisted(context.WithoutCancel(ctx), j.members...))
}

// shutdownCheckpoint checkpoints and stops j's targets: alone, or as a
// group at one instant. taken maps each target's key to its checkpoint,
// and "" to the group's ID.
func (d *Daemon) shutdownCheckpoint(ctx context.Context, j *shutdownJob) (taken map[string]string, what string, err error) {
	taken = map[string]string{}
	if j.group == "" {
		p := j.members[0]
		c, err := d.Create(ctx, CreateRequest{Target: refName(p.Target)})
		if err != nil {
			return nil, refName(p.Target), err
		}
		taken[p.Target.Key()] = c.ID
		return taken, refName(p.Target), nil
	}
	// A group's members talk to one another: their connections are
	// restored with them, both ends being in the group.
	req := GroupRequest{Name: j.group + "-" + store.NewID()[:8], Options: store.Options{TCPEstablished: true}}
	for _, p := range j.members {
		req.Targets = append(req.Targets, refName(p.Target))
	}
	g, err := d.CreateGroup(ctx, req)
	if err != nil {
		return nil, "group " + j.group, err
	}
	for _, m := range g.Members {
		taken[m.Target.Key()] = m.Checkpoint
	}
	taken[""] = g.ID
	return taken, "group " + j.group, nil
}

// restorePersisted, at start, restores the persisted targets a shutdown
// checkpointed and that no longer run, one by one in the order they were
// marked (a server before the client started after it), a group's
// members together, all or none. One that fails stays listed with the
// reason, its checkpoint kept for a restore by hand.
func (d *Daemon) restorePersisted(ctx context.Context) {
	ps, err := d.store.Persisted(ctx)
	if err != nil {
		d.log.Error("read the persisted targets", "err", err)
		return
	}
	done := map[string]bool{}
	for _, p := range ps {
		if p.Checkpoint == "" || done[p.ShutdownGroup] || ctx.Err() != nil {
			continue
		}
		members := []store.Persisted{p}
		if p.ShutdownGroup != "" {
			done[p.ShutdownGroup] = true
			members = members[:0]
			for _, q := range ps {
				if q.ShutdownGroup == p.ShutdownGroup && q.Checkpoint != "" {
					members = append(members, q)
				}
			}
		}
		errText := d.restoreForStart(ctx, members)
		for i := range members {
			q := &members[i]
			q.Error = errText
			if errText == "" {
				q.Checkpoint, q.ShutdownGroup, q.Boot = "", "", ""
			}
		}
		if err := d.store.PutPersisted(context.WithoutCancel(ctx), members...); err != nil {
			d.log.Error("record the restore of persisted targets", "target", p.Target.Key(), "err", err)
		}
	}
}

// restoreForStart restores what a shutdown took of members (one target,
// or a group's), unless, in the boot that took it, they all run already
// (restored by hand, or the stop was no shutdown). In another boot
// nothing of theirs runs, whatever process now has their PIDs. It returns
// why it failed, or "".
func (d *Daemon) restoreForStart(ctx context.Context, members []store.Persisted) string {
	running := 0
	for _, p := range members {
		if t, err := d.store.GetTarget(ctx, p.Target.Key()); err == nil && p.Boot == d.store.Boot() && d.alive(t) {
			running++
		}
	}
	if running == len(members) {
		return ""
	}
	start, p := time.Now(), members[0]
	var err error
	if p.ShutdownGroup != "" {
		_, err = d.RestoreGroup(ctx, p.ShutdownGroup, "")
	} else {
		_, err = d.Restore(ctx, RestoreRequest{Checkpoint: p.Checkpoint})
	}
	if err != nil {
		d.log.Error("restore persisted targets at start", "target", p.Target.Key(), "group", p.Group, "err", err)
		return "its restore at start failed: " + errdefs.Message(err)
	}
	d.log.Info("restored at start", "target", p.Target.Key(), "group", p.Group, "members", len(members),
		"checkpointed_in_boot", p.Boot, "boot_changed", p.Boot != d.store.Boot(), "took", time.Since(start))
	return ""
}
