package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/schedule"
	"github.com/ckptd/ckptd/store"
	"golang.org/x/sys/unix"
)

// LogFile is the name of a workload's combined stdout/stderr log.
const LogFile = "output.log"

// TargetStatus is a known target and whether it runs.
type TargetStatus struct {
	store.Target
	Running  bool
	Image    string   // a container's image
	Warnings []string // what a restore could not give back as saved
	// Ps fills these in: the target's schedule and newest checkpoint.
	Schedule         *schedule.Status
	LastCheckpoint   string
	LastCheckpointAt time.Time
	Attached         int    // clients attached to its terminal session
	TerminalError    string // why its terminal's holder did not answer
	// Persisted is set when it outlives reboots: what the last shutdown
	// took of it, and why that or its restore failed.
	Persisted *store.Persisted
}

// Ps lists known targets and containerd's containers; all includes the
// ones that ended. When containerd cannot be reached, the other targets
// are still listed and the warning says why containers are missing.
func (d *Daemon) Ps(ctx context.Context, all bool) (out []*TargetStatus, warnings []string, err error) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return nil, nil, err
	}
	containers := map[string]*store.Target{}
	caller := access.From(ctx)
	endedNetworks := false
	for _, t := range ts {
		if !caller.Owns(t.Owner) {
			continue
		}
		if t.Kind == store.KindContainer {
			containers[t.Key()] = t
			endedNetworks = endedNetworks || t.Network != nil && !d.alive(t)
			continue
		}
		s := d.status(t)
		asleep := t.Hibernated()
		if !s.Running && !asleep && t.Exit == "" && s.Exit != exitGone {
			d.keepExit(ctx, t, s.Exit)
		}
		endedNetworks = endedNetworks || !s.Running && !asleep && t.Network != nil
		if all || s.Running || asleep {
			out = append(out, s)
		}
	}
	if endedNetworks {
		go d.releaseEndedNetworks() // they ended out of ckptd's sight
	}
	if !caller.IsRoot() {
		return d.annotate(ctx, out, nil) // containers are root's
	}
	cs, err := d.containerStatuses(ctx, all, containers)
	if err != nil {
		return d.annotate(ctx, out, []string{fmt.Sprintf("containers not listed: %v", err)})
	}
	out = append(out, cs...)
	if all {
		for _, t := range containers { // gone from containerd
			out = append(out, d.status(t))
		}
	}
	return d.annotate(ctx, out, nil)
}

func (d *Daemon) alive(t *store.Target) bool { return proc.Alive(t.PID, t.StartTime) }

func (d *Daemon) status(t *store.Target) *TargetStatus {
	s := &TargetStatus{Target: *t, Running: d.alive(t)}
	if s.Running && t.Terminal != nil && d.terms != nil {
		if st, err := d.terms.Status(sessionName(t.TargetRef)); err == nil {
			s.Attached = st.Clients
		} else {
			s.TerminalError = errdefs.Message(err)
		}
	}
	if t.Hibernated() {
		s.Exit = ""
	} else if !s.Running && s.Exit == "" {
		s.Exit = exitGone
		if e, ok := d.sup.ExitOf(t.PID); ok {
			s.Exit = e.String()
		}
	}
	return s
}

// annotate adds the persisted targets a shutdown checkpointed and the
// start did not restore (listed until they run or are forgotten), and
// each target's schedule, persistence and newest checkpoint, reading the
// index once.
func (d *Daemon) annotate(ctx context.Context, ts []*TargetStatus, warnings []string) ([]*TargetStatus, []string, error) {
	pers := d.persisted(ctx)
	listed := map[string]bool{}
	for _, t := range ts {
		listed[t.Key()] = true
	}
	for key, p := range pers {
		if p.Checkpoint == "" || listed[key] || !access.From(ctx).Owns(p.Target.Owner) {
			continue
		}
		if t, err := d.store.GetTarget(ctx, key); err == nil {
			ts = append(ts, d.status(t))
		}
	}
	scheds := map[string]schedule.Status{}
	for _, s := range d.sched.List() {
		scheds[s.Key] = s
	}
	all, err := d.store.List(ctx, store.Filter{})
	if err != nil {
		return ts, warnings, err
	}
	newest := map[string]*store.Checkpoint{}
	for _, c := range all { // oldest first: the last one of a key wins
		newest[c.Target.Key()] = c
	}
	for _, t := range ts {
		if s, ok := scheds[t.Key()]; ok {
			t.Schedule = &s
		}
		if c := newest[t.Key()]; c != nil {
			t.LastCheckpoint, t.LastCheckpointAt = c.Name, c.Created
		}
		if p, ok := pers[t.Key()]; ok {
			t.Persisted = &p
		}
	}
	return ts, warnings, nil
}

// Kill sends sig (0: SIGKILL) to the root of a workload's tree (its PID
// namespace dies with pid 1) or of a process or container ckptd restored;
// never to one it only checkpointed, which is its owner's to end.
func (d *Daemon) Kill(ctx context.Context, target string, sig int) error {
	if sig == 0 {
		sig = int(unix.SIGKILL)
	}
	if sig < 1 || sig > sigMax {
		return fmt.Errorf("signal %d: want 1 to %d: %w", sig, sigMax, errdefs.ErrInvalidArgument)
	}
	t, unlock, err := d.lockKnown(ctx, target)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: ckptd ends only what it launched or restored: %w", target, err)
	}
	if err != nil {
		return err
	}
	defer unlock()
	if t.Hibernated() {
		// It sleeps: ending it lets go of its ports and network.
		return d.endHibernation(ctx, t)
	}
	if t.Kind != store.KindWorkload && t.RestoredFrom == "" {
		return fmt.Errorf("%s was not launched or restored by ckptd, which ends only what it launched or restored: %w",
			target, errdefs.ErrFailedPrecondition)
	}
	unmark := func() {}
	if s := unix.Signal(sig); s == unix.SIGKILL || s == unix.SIGTERM || s == unix.SIGINT {
		unmark = d.markEnding(t.PID) // a user's end: no restart
		d.halt(t.Key(), true)
	}
	err = proc.Signal(t.PID, t.StartTime, unix.Signal(sig)) // never a PID reused meanwhile
	if err != nil {
		unmark()
	}
	if errors.Is(err, proc.ErrGone) {
		return fmt.Errorf("%s is not running: %w", target, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return fmt.Errorf("kill %s: %w", target, err)
	}
	return nil
}

// sigMax is Linux's highest signal (SIGRTMAX).
const sigMax = 64

// lockKnown resolves target, takes its lock and returns its record,
// running or not. The caller unlocks.
func (d *Daemon) lockKnown(ctx context.Context, target string) (*store.Target, func(), error) {
	ref, unlock, err := d.lockRef(ctx, target)
	if err != nil {
		return nil, nil, err
	}
	t, err := d.store.GetTarget(ctx, ref.Key())
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return t, unlock, nil
}

// lockRef resolves target and takes its lock. The caller unlocks.
func (d *Daemon) lockRef(ctx context.Context, target string) (store.TargetRef, func(), error) {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return ref, nil, err
	}
	unlock, err := d.locks.Lock(ctx, ref.Key())
	return ref, unlock, err
}

func (d *Daemon) workload(ctx context.Context, name string) (*store.Target, error) {
	t, err := d.store.GetTarget(ctx, store.TargetRef{Kind: store.KindWorkload, Name: name}.Key())
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("workload %q: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := ownTarget(ctx, t.TargetRef, fmt.Sprintf("workload %q", name)); err != nil {
		return nil, err
	}
	return t, nil
}

// restoredContainer is the record of a container ckptd restored, which
// has a log ckptd keeps.
func (d *Daemon) restoredContainer(ctx context.Context, target string) (*store.Target, error) {
	if err := access.From(ctx).Need("a container"); err != nil {
		return nil, err
	}
	ref, err := d.containerRef(target)
	if err != nil {
		return nil, err
	}
	t, err := d.store.GetTarget(ctx, ref.Key())
	if err == nil && t.LogPath == "" {
		err = errdefs.ErrNotFound
	}
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("no log of %s: ckptd keeps the logs of containers it restored: %w", target, errdefs.ErrNotFound)
	}
	return t, err
}

// resolveRef turns a user's TARGET into a reference: ctr:NAMESPACE/ID is a
// container, a number is a PID (the workload it is the root of, if any),
// anything else a workload name.
func (d *Daemon) resolveRef(ctx context.Context, target string) (store.TargetRef, error) {
	if target == "" {
		return store.TargetRef{}, fmt.Errorf("no target given: %w", errdefs.ErrInvalidArgument)
	}
	if container.IsRef(target) {
		if err := access.From(ctx).Need("a container"); err != nil {
			return store.TargetRef{}, err
		}
		return d.containerRef(target)
	}
	pid, err := strconv.Atoi(target)
	if err != nil {
		t, err := d.workload(ctx, target)
		if err != nil {
			return store.TargetRef{}, err
		}
		return t.TargetRef, nil
	}
	if pid <= 0 {
		return store.TargetRef{}, fmt.Errorf("%q is not a target: a target is a PID (1 or more), a workload's name, or a container ctr:NAMESPACE/ID: %w", target, errdefs.ErrInvalidArgument)
	}
	if pid, err = callersPID(ctx, pid); err != nil {
		return store.TargetRef{}, err
	}
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return store.TargetRef{}, err
	}
	for _, t := range ts {
		if t.PID == pid && d.alive(t) {
			return t.TargetRef, ownTarget(ctx, t.TargetRef, fmt.Sprintf("process %d", pid))
		}
	}
	owner, err := processOwner(ctx, pid)
	return store.TargetRef{Kind: store.KindProcess, PID: pid, Owner: owner}, err
}
