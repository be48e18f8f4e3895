package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/store"
)

// groupRun is this host's part of one group checkpoint, phase by phase:
// begin (locks, prepare), freeze, dump, then commit and release, or
// abort. A group of this host's targets runs them in a row; one across
// hosts runs them in step with the other hosts (group_peers.go).
type groupRun struct {
	d      *Daemon
	g      *store.Group
	ms     []*member
	unlock func()
	run    bool // --leave-running
	start  time.Time
	// ctx outlives the client from the freeze on: the group completes or
	// rolls back whole.
	ctx context.Context
}

// beginGroup takes the targets' locks and tells each workload a
// checkpoint comes; nothing is frozen yet.
func (d *Daemon) beginGroup(ctx context.Context, g *store.Group, req GroupRequest) (*groupRun, error) {
	ts, unlock, err := d.lockMembers(ctx, req.Targets)
	if err != nil {
		return nil, err
	}
	ms, err := d.newMembers(ctx, g, ts, req)
	if err != nil {
		unlock()
		return nil, err
	}
	return &groupRun{d: d, g: g, ms: ms, unlock: unlock, run: req.Options.LeaveRunning, ctx: context.WithoutCancel(ctx)}, nil
}

func (r *groupRun) freeze(ctx context.Context) error {
	r.start = time.Now()
	return r.d.freezeMembers(ctx, r.g, r.ms)
}

func (r *groupRun) dump() error {
	froze := time.Since(r.start)
	err := r.d.dumpMembers(r.ctx, r.ms)
	r.d.log.Debug("group members dumped", "group", r.g.Name, "freeze", froze, "dumps", time.Since(r.start)-froze, "err", err)
	return err
}

// abort undoes everything before the commit: every member runs as before
// and nothing is kept.
func (r *groupRun) abort() error {
	defer r.unlock()
	return errors.Join(r.d.discardMembers(r.ctx, r.ms), r.d.thawMembers(r.ctx, r.ms))
}

// commit publishes this host's members and writes the group's record,
// which lists others (other hosts' members) too. Members that stop stay
// frozen until release; members that run on are let go first. A commit
// that fails has been aborted.
func (r *groupRun) commit(others []store.GroupMember) error {
	if r.run {
		if err := r.d.thawMembers(r.ctx, r.ms); err != nil {
			return errors.Join(err, r.abort())
		}
	}
	if err := r.d.commitGroup(r.ctx, r.g, r.ms, r.start, !r.run, others); err != nil {
		return errors.Join(err, r.abort())
	}
	return nil
}

// uncommit takes back a commit another host could not match: the
// record and the members go, and the members run as before.
func (r *groupRun) uncommit() error {
	return errors.Join(r.d.store.DropGroupRecord(r.g), r.abort())
}

// release lets the members of a complete group go (ending those that
// stop), seals what is left to seal and tells each workload.
func (r *groupRun) release() error {
	defer r.unlock()
	var err error
	if !r.run {
		err = r.d.releaseMembers(r.ctx, r.ms, false)
	}
	for _, m := range r.ms {
		err = errors.Join(err, r.d.recordTarget(r.ctx, m.t))
		if !r.run {
			err = errors.Join(err, r.d.sealReleased(r.ctx, m.c, m.t, m.stats, m.work.Path, nil))
		}
		var done error
		r.d.closeWork(m.work, &done)
	}
	for _, m := range r.ms {
		r.d.tellSealed(r.ctx, m.t, m.c)
	}
	if err != nil {
		return fmt.Errorf("it was saved, but then: %w", err)
	}
	return nil
}

// commitGroup publishes every member, durably while they are frozen, or
// sealed after they were let go, then writes the group's record: the
// group is complete once it is on disk.
func (d *Daemon) commitGroup(ctx context.Context, g *store.Group, ms []*member, start time.Time, frozen bool, others []store.GroupMember) error {
	now := time.Now().UTC()
	g.Created = now
	if !frozen {
		g.Frozen = time.Since(start)
	}
	for _, m := range ms {
		m.c.Created = now
		publish := d.store.PublishSealing
		if frozen {
			publish = func(ctx context.Context, c *store.Checkpoint) error {
				_, err := d.store.PublishDurable(ctx, c)
				return err
			}
		}
		if err := publish(ctx, m.c); err != nil {
			return err
		}
		if !frozen {
			if _, err := d.store.Seal(ctx, m.c.ID, m.stats, m.work.Path, dumper.LogFile, dumper.StatsFile); err != nil {
				return err
			}
		}
		g.Members = append(g.Members, store.GroupMember{Checkpoint: m.c.ID, Name: m.c.Name, Target: m.c.Target})
	}
	g.Members = append(g.Members, others...)
	if frozen {
		g.Frozen = time.Since(start)
	}
	return d.store.PutGroup(ctx, g)
}

// discardMembers removes what a failed group wrote: staged and published
// members alike (the record was not written).
func (d *Daemon) discardMembers(ctx context.Context, ms []*member) error {
	var errs []error
	for _, m := range ms {
		if m.dir == "" {
			continue
		}
		if c, err := d.store.Get(ctx, m.c.ID); err == nil && c.IsSealing() {
			errs = append(errs, d.store.Unpublish(ctx, m.c.ID))
		} else if err == nil {
			_, err = d.store.Remove(ctx, []string{m.c.ID}, false)
			errs = append(errs, err)
		} else {
			errs = append(errs, d.store.Discard(ctx, m.c.ID))
		}
		if m.work != nil {
			failed := error(errors.New("failed"))
			d.closeWork(m.work, &failed)
		}
	}
	return errors.Join(errs...)
}

// thawMembers lets every member of a failed group run again.
func (d *Daemon) thawMembers(ctx context.Context, ms []*member) error {
	var errs []error
	for _, m := range ms {
		if m.unhold != nil {
			m.unhold(false)
		}
		if m.cg != nil {
			errs = append(errs, m.cg.Dissolve(ctx))
		}
	}
	return errors.Join(errs...)
}

// releaseMembers lets the members of a complete group go: all run again,
// or all end.
func (d *Daemon) releaseMembers(ctx context.Context, ms []*member, leaveRunning bool) error {
	if leaveRunning {
		return d.thawMembers(ctx, ms)
	}
	var errs []error
	for _, m := range ms {
		d.markEnding(m.t.PID)
		kctx, cancel := context.WithTimeout(ctx, freezeTimeout)
		errs = append(errs, m.cg.Kill(kctx), m.cg.Dissolve(kctx))
		cancel()
		m.unhold(true)
	}
	return errors.Join(errs...)
}
