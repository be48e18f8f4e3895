package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/schedule"
	"github.com/ckptd/ckptd/store"
)

// groupKeyPrefix keys a group's schedule, apart from targets' keys.
const groupKeyPrefix = "group/"

func groupScheduleKey(name string) string { return groupKeyPrefix + name }

// setGroupSchedule schedules group checkpoints of req.Group, named
// req.Target-N.
func (d *Daemon) setGroupSchedule(ctx context.Context, req ScheduleRequest) (schedule.Status, error) {
	if err := store.ValidateName(req.Target); err != nil {
		return schedule.Status{}, fmt.Errorf("group schedule: %w", err)
	}
	// Its ticks are ckptd's own work, over every member at once.
	if err := access.From(ctx).Need("a group's schedule"); err != nil {
		return schedule.Status{}, err
	}
	for _, target := range req.Group {
		ref, err := d.resolveRef(ctx, target)
		if err != nil {
			return schedule.Status{}, err
		}
		if ref.Kind == store.KindContainer {
			return schedule.Status{}, fmt.Errorf("%s: groups take workloads and host processes: %w", target, errdefs.ErrInvalidArgument)
		}
	}
	return d.sched.Set(ctx, schedule.Policy{
		Target: req.Target, Key: groupScheduleKey(req.Target), Members: req.Group,
		Every: req.Every, Retention: req.Retention, FromConfig: req.FromConfig,
	})
}

// scheduledGroup takes one group checkpoint for the schedule p.
func (d *Daemon) scheduledGroup(ctx context.Context, p schedule.Policy) (string, error) {
	name, err := d.nextGroupName(ctx, p.Target)
	if err != nil {
		return "", err
	}
	g, err := d.CreateGroup(ctx, GroupRequest{Name: name, Targets: p.Members, Scheduled: true,
		Options: store.Options{LeaveRunning: true}, schedule: p.Target})
	if err != nil {
		return "", err
	}
	return g.ID, nil
}

// nextGroupName is base-N, N above every number base's groups have had.
func (d *Daemon) nextGroupName(ctx context.Context, base string) (string, error) {
	gs, err := d.store.Groups(ctx)
	if err != nil {
		return "", err
	}
	n := 0
	for _, g := range gs {
		if v, err := strconv.Atoi(strings.TrimPrefix(g.Name, base+"-")); err == nil && g.Schedule == base && v > n {
			n = v
		}
	}
	for {
		n++
		name := fmt.Sprintf("%s-%d", base, n)
		if taken, err := d.store.NameTaken(ctx, name); err != nil || !taken {
			return name, err
		}
	}
}

// groupCandidates are the groups the schedule name took.
func (d *Daemon) groupCandidates(ctx context.Context, name string) ([]schedule.Candidate, error) {
	gs, err := d.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	var out []schedule.Candidate
	for _, g := range gs {
		if !g.Scheduled || g.Schedule != name {
			continue
		}
		cand := schedule.Candidate{ID: g.ID, Created: g.Created, Sealed: true}
		for _, m := range g.Members {
			if m.Host != "" {
				continue
			}
			c, err := d.store.Get(ctx, m.Checkpoint)
			if err != nil {
				return nil, err
			}
			cand.Size += c.Size()
			cand.Sealed = cand.Sealed && !c.IsSealing()
		}
		out = append(out, cand)
	}
	return out, nil
}

// pruneGroups removes the groups ids names and returns the other ids.
func (d *Daemon) pruneGroups(ctx context.Context, ids []string) (rest, removed []string, err error) {
	for _, id := range ids {
		g, err := d.store.GetGroup(ctx, id)
		if errdefs.IsNotFound(err) {
			rest = append(rest, id)
			continue
		}
		if err != nil {
			return nil, removed, err
		}
		if _, err := d.store.RemoveGroup(ctx, g); errdefs.IsFailedPrecondition(err) {
			continue // in use: left for the next time
		} else if err != nil {
			return nil, removed, err
		}
		removed = append(removed, g.ID)
	}
	return rest, removed, nil
}
