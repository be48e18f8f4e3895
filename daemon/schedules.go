package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/schedule"
	"github.com/ckptd/ckptd/store"
)

// ScheduleRequest sets a target's schedule.
type ScheduleRequest struct {
	Target string // a PID, workload name or ctr:NS/ID; with Group, the group's name
	// Group are the targets of a group's schedule: checkpointed at one
	// instant, as the group Target-N.
	Group      []string
	Every      time.Duration
	Retention  schedule.Retention
	FromConfig bool
}

// SetSchedule adds or replaces the schedule of a target.
func (d *Daemon) SetSchedule(ctx context.Context, req ScheduleRequest) (schedule.Status, error) {
	if len(req.Group) > 0 {
		return d.setGroupSchedule(ctx, req)
	}
	ref, err := d.resolveRef(ctx, req.Target)
	if err != nil {
		return schedule.Status{}, err
	}
	if ref.Kind == store.KindProcess {
		// Its ticks are ckptd's own work, whose first checkpoint of a
		// process would be root's.
		if err := access.From(ctx).Need("a schedule of a process"); err != nil {
			return schedule.Status{}, err
		}
		// Refused now, not at every tick: a PID names one process's life.
		if st, err := proc.ReadStat(ref.PID); err != nil || st.State == 'Z' {
			return schedule.Status{}, fmt.Errorf("process %d is not running: %w", ref.PID, errdefs.ErrNotFound)
		}
	}
	return d.sched.Set(ctx, schedule.Policy{
		Target: refName(ref), Key: ref.Key(), Every: req.Every, Retention: req.Retention, FromConfig: req.FromConfig,
	})
}

// RemoveSchedule ends a target's schedule; its checkpoints stay.
func (d *Daemon) RemoveSchedule(ctx context.Context, target string) error {
	if err := d.sched.Remove(ctx, groupScheduleKey(target)); !errdefs.IsNotFound(err) {
		return err
	}
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return err
	}
	return d.sched.Remove(ctx, ref.Key())
}

// Schedules lists every schedule.
func (d *Daemon) Schedules(ctx context.Context) []schedule.Status {
	all := d.sched.List()
	caller := access.From(ctx)
	if caller.IsRoot() {
		return all
	}
	var out []schedule.Status
	for _, s := range all {
		if t, err := d.store.GetTarget(ctx, s.Key); err == nil && caller.Owns(t.Owner) {
			out = append(out, s)
		}
	}
	return out
}

// refName is how resolveRef names ref again.
func refName(ref store.TargetRef) string {
	switch ref.Kind {
	case store.KindWorkload:
		return ref.Name
	case store.KindContainer:
		return "ctr:" + ref.Name
	}
	return strconv.Itoa(ref.PID)
}

// scheduled is what the scheduler drives: the daemon's create, list and
// prune, limited to scheduled checkpoints.
type scheduled struct{ d *Daemon }

func (s scheduled) Snapshot(ctx context.Context, p schedule.Policy) (string, error) {
	if len(p.Members) > 0 {
		return s.d.scheduledGroup(ctx, p)
	}
	c, err := s.d.Create(ctx, CreateRequest{Target: p.Target, Scheduled: true, Options: store.Options{LeaveRunning: true}})
	if err != nil {
		return "", err
	}
	return c.ID, nil
}

func (s scheduled) Candidates(ctx context.Context, key string) ([]schedule.Candidate, error) {
	if name, ok := strings.CutPrefix(key, groupKeyPrefix); ok {
		return s.d.groupCandidates(ctx, name)
	}
	cs, err := s.d.store.List(ctx, store.Filter{TargetKey: key})
	if err != nil {
		return nil, err
	}
	var out []schedule.Candidate
	for _, c := range cs {
		if c.Scheduled && c.Group == "" { // a group's go with their group
			out = append(out, schedule.Candidate{ID: c.ID, Created: c.Created, Size: c.Size(), Sealed: !c.IsSealing()})
		}
	}
	return out, nil
}

func (s scheduled) Prune(ctx context.Context, ids []string) ([]string, error) {
	ids, removed, err := s.d.pruneGroups(ctx, ids)
	if err != nil {
		return removed, err
	}
	more, err := s.d.store.Prune(ctx, ids)
	removed = append(removed, more...)
	for _, id := range removed {
		s.d.events.Publish(events.Event{Kind: events.Pruned, Checkpoint: id})
	}
	return removed, err
}

// latestSealed is the sealed checkpoint of a target that this ckptd took
// or received last (store.Checkpoint.Arrived).
func (d *Daemon) latestSealed(ctx context.Context, target string) (*store.Checkpoint, error) {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return nil, err
	}
	cs, err := d.store.List(ctx, store.Filter{TargetKey: ref.Key()})
	if err != nil {
		return nil, err
	}
	var latest *store.Checkpoint
	for _, c := range cs {
		if !c.IsSealing() && (latest == nil || c.Arrived().After(latest.Arrived())) {
			latest = c
		}
	}
	if latest == nil {
		return nil, fmt.Errorf("no sealed checkpoint of %s: %w", ref.Key(), errdefs.ErrNotFound)
	}
	return latest, nil
}
