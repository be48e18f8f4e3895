package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/limits"
	"github.com/ckptd/ckptd/store"
)

// Limiter puts a workload's tree in cgroups that bound its memory and
// CPU; *limits.Hierarchy is the real one.
type Limiter interface {
	Apply(workload string, pid int, l limits.Limits) error
	Roots(workload string) map[string]string
	Remove(workload string) error
}

// workloadLimits checks run's --memory and --cpus (nil: none asked).
func (d *Daemon) workloadLimits(memory int64, cpus float64) (*limits.Limits, error) {
	if memory == 0 && cpus == 0 {
		return nil, nil
	}
	l := limits.Limits{Memory: memory, CPUs: cpus}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if d.limits == nil {
		return nil, fmt.Errorf("--memory and --cpus: %v: %w", d.limitsErr, errdefs.ErrFailedPrecondition)
	}
	return &l, nil
}

// limitRestore makes the cgroups a restore of c as ref goes into, with
// c's limits, and says where CRIU puts the tree (nil: nowhere special).
func (d *Daemon) limitRestore(c *store.Checkpoint, ref store.TargetRef) (map[string]string, error) {
	if c.Target.Limits == nil || ref.Kind != store.KindWorkload {
		return nil, nil
	}
	if d.limits == nil {
		return nil, fmt.Errorf("checkpoint %s was taken with --memory or --cpus: %v: %w", c.Name, d.limitsErr, errdefs.ErrFailedPrecondition)
	}
	if err := d.limits.Apply(ref.Name, 0, *c.Target.Limits); err != nil {
		return nil, err
	}
	return d.limits.Roots(ref.Name), nil
}

// releaseEndedLimits removes the cgroups of workloads that ended.
func (d *Daemon) releaseEndedLimits() {
	if d.limits == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return
	}
	for _, t := range ts {
		if t.Limits != nil && t.Kind == store.KindWorkload && !d.alive(t) {
			if err := d.limits.Remove(t.Name); err != nil {
				d.log.Warn("remove an ended workload's cgroups", "target", t.Key(), "err", err)
			}
		}
	}
}
