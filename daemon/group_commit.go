package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/store"
)

// commitStopping commits a group whose members are about to end: every
// member durable and the record written while they are frozen, then
// they end. Only a failure before the record rolls the group back.
func (d *Daemon) commitStopping(ctx context.Context, g *store.Group, ms []*member, start time.Time) error {
	if err := d.commitGroup(ctx, g, ms, start, true); err != nil {
		return errors.Join(err, d.discardMembers(ctx, ms), d.thawMembers(ctx, ms))
	}
	err := d.releaseMembers(ctx, ms, false)
	for _, m := range ms {
		err = errors.Join(err, d.recordTarget(ctx, m.t), d.sealReleased(ctx, m.c, m.t, m.stats, m.work.Path, nil))
		d.closeWork(m.work, &err)
	}
	if err != nil {
		return fmt.Errorf("it was saved, but then: %w", err)
	}
	return nil
}

// commitRunning commits a group whose members run on: they are let go
// once their images are complete, and the group completes once every
// member is sealed (hashed, on disk). A ckptd that dies before loses only
// that snapshot; the client got no success.
func (d *Daemon) commitRunning(ctx context.Context, g *store.Group, ms []*member, start time.Time) error {
	if err := d.thawMembers(ctx, ms); err != nil {
		return errors.Join(err, d.discardMembers(ctx, ms))
	}
	if err := d.commitGroup(ctx, g, ms, start, false); err != nil {
		return errors.Join(err, d.discardMembers(ctx, ms))
	}
	var err error
	for _, m := range ms {
		err = errors.Join(err, d.recordTarget(ctx, m.t))
		var done error
		d.closeWork(m.work, &done)
	}
	if err != nil {
		return fmt.Errorf("it was saved, but then: %w", err)
	}
	return nil
}

// commitGroup publishes every member, durably while they are frozen, or
// sealed after they were let go, then writes the group's record: the
// group is complete once it is on disk.
func (d *Daemon) commitGroup(ctx context.Context, g *store.Group, ms []*member, start time.Time, frozen bool) error {
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
		kctx, cancel := context.WithTimeout(ctx, freezeTimeout)
		errs = append(errs, m.cg.Kill(kctx), m.cg.Dissolve(kctx))
		cancel()
		m.unhold(true)
	}
	return errors.Join(errs...)
}
