package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/freezer"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Freezer stops process trees at one instant; *freezer.Hierarchy is the
// real one.
type Freezer interface {
	Join(ctx context.Context, name string, root int) (*freezer.Cgroup, error)
	Sweep(ctx context.Context) ([]int, error)
}

// freezeTimeout bounds how long a group's trees take to freeze.
const freezeTimeout = 10 * time.Second

// GroupRequest asks for one checkpoint of several targets at one instant.
type GroupRequest struct {
	Name           string
	Targets        []string
	Options        store.Options
	PrepareTimeout time.Duration
	Scheduled      bool
	schedule       string // the group schedule that takes it
}

// member is one target of a group checkpoint being taken.
type member struct {
	t      *store.Target
	c      *store.Checkpoint
	cg     *freezer.Cgroup
	dir    string // staging
	work   *store.WorkDir
	stats  *store.DumpStats
	unhold func(ended bool)
}

// CreateGroup checkpoints several targets at one instant: every one is
// frozen before any is dumped, and none runs again until every member is
// durable and the group's record written, which alone makes the group
// complete. Any failure before that leaves every target running and no
// group; after it, the group is kept whatever else fails.
func (d *Daemon) CreateGroup(ctx context.Context, req GroupRequest) (*store.Group, error) {
	if d.freezer == nil {
		return nil, fmt.Errorf("group checkpoints need the cgroup freezer: %w", d.freezerErr)
	}
	if err := d.groupName(ctx, req.Name); err != nil {
		return nil, err
	}
	req.Options.LinkRemap = req.Options.LinkRemap || d.defaults.LinkRemap
	if req.Options.GhostLimit == 0 {
		req.Options.GhostLimit = d.defaults.GhostLimit
	}
	if err := checkCRIUConfig(ctx, req.Options.CRIUConfig); err != nil {
		return nil, err
	}
	g := &store.Group{ID: store.NewID(), Name: req.Name, Scheduled: req.Scheduled, Schedule: req.schedule}
	if hosts := remoteTargets(req.Targets); len(hosts) > 0 {
		return d.createAcross(ctx, g, req, hosts)
	}
	r, err := d.beginGroup(ctx, g, req)
	if err != nil {
		return nil, d.groupFailed(g, err)
	}
	if err := r.freeze(ctx); err != nil {
		return nil, d.groupFailed(g, errors.Join(err, r.abort()))
	}
	if err := r.dump(); err != nil {
		return nil, d.groupFailed(g, errors.Join(err, r.abort()))
	}
	if err := r.commit(nil); err != nil {
		return nil, d.groupFailed(g, err)
	}
	err = r.release()
	d.groupCreated(g)
	if err != nil {
		return g, d.groupFailed(g, err)
	}
	return g, nil
}

func (d *Daemon) groupCreated(g *store.Group) {
	d.log.Info("group checkpoint created", "group", g.Name, "id", g.ID, "members", len(g.Members), "frozen", g.Frozen)
	d.events.Publish(events.Event{Kind: events.Created, Target: "group/" + g.Name, Checkpoint: g.ID, Name: g.Name, Frozen: g.Frozen})
}

func (d *Daemon) groupFailed(g *store.Group, err error) error {
	d.events.Publish(events.Event{Kind: events.Failed, Op: "create", Target: "group/" + g.Name, Err: err.Error()})
	return fmt.Errorf("group %s: %w", g.Name, err)
}

// groupName checks a new group's name: groups share checkpoints' names.
func (d *Daemon) groupName(ctx context.Context, name string) error {
	if err := store.ValidateName(name); err != nil {
		return fmt.Errorf("group: %w", err)
	}
	taken, err := d.store.NameTaken(ctx, name)
	if err != nil {
		return err
	}
	if taken {
		return fmt.Errorf("name %q is taken by a checkpoint or a group: %w", name, errdefs.ErrAlreadyExists)
	}
	return nil
}

// lockMembers resolves the targets and takes their locks, in the order of
// their keys so that two groups sharing members cannot deadlock.
func (d *Daemon) lockMembers(ctx context.Context, targets []string) ([]*store.Target, func(), error) {
	if len(targets) == 0 {
		return nil, nil, fmt.Errorf("a group needs at least one target: %w", errdefs.ErrInvalidArgument)
	}
	keys := map[string]string{}
	for _, target := range targets {
		ref, err := d.resolveRef(ctx, target)
		if err != nil {
			return nil, nil, err
		}
		if ref.Kind == store.KindContainer {
			return nil, nil, fmt.Errorf("%s: groups take workloads and host processes; containers checkpoint through their runtime, which freezes them on its own: %w", target, errdefs.ErrInvalidArgument)
		}
		if _, dup := keys[ref.Key()]; dup {
			return nil, nil, fmt.Errorf("%s is named twice: %w", target, errdefs.ErrInvalidArgument)
		}
		keys[ref.Key()] = target
	}
	order := make([]string, 0, len(keys))
	for k := range keys {
		order = append(order, k)
	}
	slices.Sort(order)
	var unlocks []func()
	unlockAll := func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}
	byTarget := map[string]*store.Target{}
	for _, k := range order {
		t, unlock, err := d.lockLive(ctx, keys[k])
		if err != nil {
			unlockAll()
			return nil, nil, err
		}
		unlocks = append(unlocks, unlock)
		if err := runsAsOwner(t); err != nil {
			unlockAll()
			return nil, nil, err
		}
		byTarget[keys[k]] = t
	}
	var ts []*store.Target
	for _, target := range targets {
		ts = append(ts, byTarget[target])
	}
	return ts, unlockAll, nil
}

// newMembers makes each member's checkpoint record and tells each
// workload a checkpoint comes.
func (d *Daemon) newMembers(ctx context.Context, g *store.Group, ts []*store.Target, req GroupRequest) ([]*member, error) {
	var ms []*member
	for _, t := range ts {
		o := req.Options
		o.ShellJob = o.ShellJob || ledSession(t.TargetRef)
		name, err := d.checkpointName(ctx, "", t.TargetRef)
		if err != nil {
			return nil, err
		}
		c := &store.Checkpoint{
			ID: store.NewID(), Name: name, Target: t.TargetRef,
			CRIUVersion: d.criu.VersionString(), Kernel: d.host.Kernel, Host: d.host.Hostname, CPUModel: d.host.CPUModel,
			Options: o, Scheduled: req.Scheduled, Network: networkSpec(t.Network), Group: g.ID,
		}
		c.Target.Terminal = d.terminalAtCheckpoint(c.Target)
		if c.AppState, err = d.prepare(ctx, t, req.PrepareTimeout); err != nil {
			return nil, err
		}
		ms = append(ms, &member{t: t, c: c})
	}
	return ms, nil
}

// freezeMembers moves every member into a freezer cgroup of its own, then
// freezes them all.
func (d *Daemon) freezeMembers(ctx context.Context, g *store.Group, ms []*member) error {
	ctx, cancel := context.WithTimeout(ctx, freezeTimeout)
	defer cancel()
	for i, m := range ms {
		cg, err := d.freezer.Join(ctx, fmt.Sprintf("%s/%d", g.ID, i), m.t.PID)
		if err != nil {
			return fmt.Errorf("freeze %s: %w", m.t.TargetRef, err)
		}
		m.cg = cg
	}
	for _, m := range ms {
		if err := m.cg.Freeze(ctx); err != nil {
			return fmt.Errorf("freeze %s: %w", m.t.TargetRef, err)
		}
	}
	return nil
}

// dumpMembers dumps every frozen member at once; CRIU leaves each frozen.
func (d *Daemon) dumpMembers(ctx context.Context, ms []*member) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			if errs[i] = d.dumpMember(ctx, m); errs[i] != nil {
				errs[i] = fmt.Errorf("checkpoint %s: %w", m.t.TargetRef, errs[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *Daemon) dumpMember(ctx context.Context, m *member) error {
	opts, err := withNetwork(withTerminal(dumperOptions(m.c.Options), m.c.Target), m.t.Network)
	if err != nil {
		return err
	}
	if m.dir, err = d.store.StageWriteback(ctx, m.c.ID); err != nil {
		return err
	}
	d.saveScrollback(m.t.TargetRef, m.dir)
	if m.work, err = d.store.NewDumpWork(m.c.ID); err != nil {
		return err
	}
	if m.unhold, err = d.holdForDump(m.t, opts.TCPEstablished); err != nil {
		return err
	}
	opts.LeaveRunning = true // the freezer keeps it stopped; releaseMembers ends it
	res, err := d.dumper.Dump(ctx, dumper.Request{
		PID: m.t.PID, Dir: m.dir, WorkDir: m.work.Path, Options: opts, FreezeCgroup: m.cg.Path,
		Commit: func() error {
			if !proc.Alive(m.t.PID, m.t.StartTime) {
				return fmt.Errorf("pid %d is no longer %s: %w", m.t.PID, m.t.Key(), errdefs.ErrFailedPrecondition)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	m.stats = convertStats(res.Stats)
	return nil
}

// thawLeftGroups lets go of the trees a ckptd killed during a group
// checkpoint left frozen; their group never completed, and the store
// removed its members.
func (d *Daemon) thawLeftGroups(ctx context.Context) {
	if d.freezer == nil {
		return
	}
	freed, err := d.freezer.Sweep(ctx)
	if len(freed) > 0 {
		d.log.Warn("thawed processes a group checkpoint left frozen", "pids", freed)
	}
	if err != nil {
		d.log.Error("thaw what a group checkpoint left frozen", "err", err)
	}
}
