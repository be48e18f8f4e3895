package daemon

import (
	"fmt"

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
// The checkpointed workload's own cgroups are made again too if they are
// gone: a program may hold their files open (Go reads its CPU quota
// there), and its copy reopens them, reading the same bounds.
func (d *Daemon) limitRestore(c *store.Checkpoint, ref store.TargetRef) (map[string]string, error) {
	if c.Target.Limits == nil || ref.Kind != store.KindWorkload {
		return nil, nil
	}
	if d.limits == nil {
		return nil, fmt.Errorf("checkpoint %s was taken with --memory or --cpus: %v: %w", c.Name, d.limitsErr, errdefs.ErrFailedPrecondition)
	}
	names := []string{ref.Name}
	if c.Target.Name != ref.Name {
		names = append(names, c.Target.Name)
	}
	for _, name := range names {
		if err := d.limits.Apply(name, 0, *c.Target.Limits); err != nil {
			return nil, err
		}
	}
	return d.limits.Roots(ref.Name), nil
}

// forgetLimits removes the cgroups of a workload ckptd forgets (ps
// --prune). An ended workload's stay until then: its checkpoints' files
// may name them.
func (d *Daemon) forgetLimits(t *store.Target) error {
	if d.limits == nil || t.Limits == nil || t.Kind != store.KindWorkload {
		return nil
	}
	return d.limits.Remove(t.Name)
}
