package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// CreateRequest asks for a checkpoint of Target (a PID or workload name).
type CreateRequest struct {
	Target  string
	Name    string // optional; defaults to <target>-<n>
	Options store.Options
	// Scheduled marks a checkpoint a schedule took, which its retention
	// may remove.
	Scheduled bool
	// PrepareTimeout bounds a workload's answer to prepare (package
	// notify); 0: DefaultPrepareTimeout.
	PrepareTimeout time.Duration
	// hibernate records the target asleep in the checkpoint, its network
	// kept (it must scale to zero).
	hibernate bool
}

// Create checkpoints a target. The checkpoint is published while the tree
// is still frozen; only then does CRIU kill it (or resume it with
// LeaveRunning). Any failure leaves the target running and nothing listed.
func (d *Daemon) Create(ctx context.Context, req CreateRequest) (*store.Checkpoint, error) {
	req.Options.LinkRemap = req.Options.LinkRemap || d.defaults.LinkRemap
	if req.Options.GhostLimit == 0 {
		req.Options.GhostLimit = d.defaults.GhostLimit
	}
	if err := checkCRIUConfig(ctx, req.Options.CRIUConfig); err != nil {
		return nil, err
	}
	target, unlock, err := d.lockLive(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := runsAsOwner(target); err != nil {
		return nil, err
	}
	req.Options.ShellJob = req.Options.ShellJob || ledSession(target.TargetRef)
	name, err := d.checkpointName(ctx, req.Name, target.TargetRef)
	if err != nil {
		return nil, err
	}
	parent, err := d.parentOf(ctx, target)
	if err != nil {
		return nil, err
	}
	var incremental *store.Incremental
	if parent != "" {
		// Held until published: rm must not take the parent from under a
		// checkpoint about to name it, and a child names only a sealed one.
		p, release, err := d.store.AcquireSealed(ctx, parent)
		switch {
		case err == nil:
			defer release()
			incremental = d.incrementalOver(ctx, p)
		case errdefs.IsDataLoss(err): // its chain is broken: this one is stored whole
			d.log.Warn("storing a checkpoint whole: its parent's chain is broken", "parent", parent, "err", err)
			if _, release, err = d.store.Acquire(ctx, parent); err != nil {
				return nil, err
			}
			defer release()
		default:
			if _, gerr := d.store.Get(ctx, parent); !errdefs.IsNotFound(gerr) {
				return nil, err
			}
			parent = "" // removed just now, or its seal failed and removed it: a new chain starts
		}
	}
	c := &store.Checkpoint{
		ID:          store.NewID(),
		Name:        name,
		Target:      target.TargetRef,
		Parent:      parent,
		CRIUVersion: d.criu.VersionString(),
		Kernel:      d.host.Kernel,
		Host:        d.host.Hostname,
		CPUModel:    d.host.CPUModel,
		Options:     req.Options,
		Scheduled:   req.Scheduled,
		Incremental: incremental,
		Network:     networkSpec(target.Network),
	}
	c.Target.Terminal = d.terminalAtCheckpoint(c.Target)
	if c.AppState, err = d.prepare(ctx, target, req.PrepareTimeout); err != nil {
		d.events.Publish(events.Event{Kind: events.Failed, Op: "create", Target: target.Key(), Err: err.Error()})
		return nil, fmt.Errorf("checkpoint %s: %w", req.Target, err)
	}
	dump := d.dump
	if target.Kind == store.KindContainer {
		dump = d.checkpointContainer
	}
	start := time.Now()
	if err := dump(ctx, c, target); err != nil {
		d.events.Publish(events.Event{Kind: events.Failed, Op: "create", Target: target.Key(), Err: err.Error()})
		return nil, fmt.Errorf("checkpoint %s: %w", req.Target, err)
	}
	if req.hibernate && !req.Options.LeaveRunning {
		if err := d.markHibernated(ctx, target, c); err != nil {
			return nil, fmt.Errorf("checkpoint %s: record it asleep: %w", req.Target, err)
		}
	}
	// The record as stored, with the files CRIU closed last.
	if c, err = d.store.Get(ctx, c.ID); err != nil {
		return nil, err
	}
	attrs := []any{"id", c.ID, "name", c.Name, "target", c.Target.Key(), "bytes", c.Size()}
	if s := c.Stats; s != nil {
		attrs = append(attrs, "frozen", time.Duration(s.FrozenTime)*time.Microsecond,
			"freezing", time.Duration(s.FreezingTime)*time.Microsecond,
			"pages_scanned", s.PagesScanned, "pages_written", s.PagesWritten, "pages_in_parent", s.PagesSkippedParent)
	}
	d.log.Info("checkpoint created", attrs...)
	e := events.Event{Kind: events.Created, Target: c.Target.Key(), Checkpoint: c.ID, Name: c.Name,
		Duration: time.Since(start), Bytes: c.Size()}
	if c.Stats != nil {
		e.Frozen = time.Duration(c.Stats.FrozenTime) * time.Microsecond
	}
	d.events.Publish(e)
	e.Kind, e.Duration, e.Frozen = events.Sealed, c.Sealed.Sub(c.Created), 0
	d.events.Publish(e)
	d.tellSealed(ctx, target, c)
	return c, nil
}

// checkCRIUConfig refuses a CRIU configuration file CRIU could not read,
// before anything freezes.
func checkCRIUConfig(ctx context.Context, path string) error {
	if path == "" {
		return nil
	}
	// Its action scripts would run as root.
	if err := access.From(ctx).Need("--criu-config"); err != nil {
		return err
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("CRIU configuration file %q: want an absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("CRIU configuration file %q: not a readable regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}

// lockLive resolves target, takes its lock and returns its record,
// checked to be running. The caller unlocks.
func (d *Daemon) lockLive(ctx context.Context, target string) (*store.Target, func(), error) {
	ref, unlock, err := d.lockRef(ctx, target)
	if err != nil {
		return nil, nil, err
	}
	live := d.liveTarget
	if ref.Kind == store.KindContainer {
		live = d.liveContainer
	}
	t, err := live(ctx, ref)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return t, unlock, nil
}

func (d *Daemon) dump(ctx context.Context, c *store.Checkpoint, t *store.Target) error {
	opts, err := withNetwork(withTerminal(dumperOptions(c.Options), c.Target), t.Network)
	if err != nil {
		return err
	}
	return d.capture(ctx, c, t, func(dir, workDir string, commit func() error) (*store.DumpStats, error) {
		done, err := d.holdForDump(t, opts.TCPEstablished)
		if err != nil {
			return nil, err
		}
		res, err := d.dumper.Dump(ctx, dumper.Request{
			PID: c.Target.PID, Dir: dir, WorkDir: workDir, Options: opts, Commit: commit,
		})
		done(err == nil && !opts.LeaveRunning)
		if err != nil {
			return nil, err
		}
		return convertStats(res.Stats), nil
	})
}

// dumpFunc writes a checkpoint's images into dir and CRIU's log and
// statistics into workDir, and calls commit while the target is frozen.
type dumpFunc func(dir, workDir string, commit func() error) (*store.DumpStats, error)

// capture runs one dump into a staged checkpoint: commit publishes it;
// a dump that fails before that leaves nothing but its CRIU log.
func (d *Daemon) capture(ctx context.Context, c *store.Checkpoint, t *store.Target, dump dumpFunc) (err error) {
	dir, err := d.store.StageWriteback(ctx, c.ID)
	if err != nil {
		return err
	}
	d.saveScrollback(t.TargetRef, dir)
	// CRIU logs apart from the images, so that a failed dump's log outlives
	// its discarded staging directory; it is kept only when the dump fails.
	work, err := d.store.NewDumpWork(c.ID)
	if err != nil {
		return errors.Join(err, d.store.Discard(ctx, c.ID))
	}
	defer d.closeWork(work, &err)
	// A target that stops stays frozen until its checkpoint is durable
	// (every file fsynced, its record written and listed), so that a
	// failure still leaves it running; hashing follows once it is gone.
	// One that runs on is released first: nothing of ckptd's happens in its
	// freeze, and its checkpoint is published, then sealed, after it. A
	// ckptd that dies in between loses only that snapshot; the client got
	// no success.
	published := false
	var synced time.Duration
	// A client that leaves (ctrl-c) gives up only the wait for CRIU's
	// turn: once CRIU runs, the create finishes or rolls back whole, and
	// nothing from the freeze on heeds ctx.
	frozen := context.WithoutCancel(ctx)
	stats, err := dump(dir, work.Path, func() error {
		// The target was resolved before the freeze, maybe long before (the
		// dump may wait its turn): the frozen tree must still be that process.
		if !proc.Alive(t.PID, t.StartTime) {
			return fmt.Errorf("pid %d is no longer %s: it ended and its PID was reused: %w", t.PID, t.Key(), errdefs.ErrFailedPrecondition)
		}
		c.Created = time.Now().UTC()
		if c.Options.LeaveRunning {
			return nil
		}
		took, err := d.store.PublishDurable(frozen, c)
		if err != nil {
			return err
		}
		synced, published = took, true
		return nil
	})
	if err == nil && c.Options.LeaveRunning {
		if err = d.store.PublishSealing(frozen, c); err == nil {
			published = true
		}
	}
	if err != nil && !published {
		if derr := d.store.Discard(frozen, c.ID); derr != nil {
			return errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
		return err
	}
	if stats != nil {
		stats.CommitSync = uint32(synced.Microseconds())
	}
	// Out of the freeze: a failure here must not make CRIU roll back a
	// checkpoint already listed, and the checkpoint names its target anyway.
	rerr := d.recordTarget(frozen, t)
	err = d.sealReleased(frozen, c, t, stats, work.Path, err)
	if rerr != nil {
		err = errors.Join(err, savedBut(c, fmt.Errorf("record its target: %w", rerr)))
	}
	return err
}

// sealReleased seals a checkpoint whose target was released: it runs
// again, or, stopped, is gone. cerr is CRIU's failure after the commit,
// if any. The seal outlives a client that gives up waiting; a seal that
// fails removes the checkpoint unless it was durable before the release.
func (d *Daemon) sealReleased(ctx context.Context, c *store.Checkpoint, t *store.Target, stats *store.DumpStats, workDir string, cerr error) error {
	d.log.Debug("target released; sealing checkpoint", "id", c.ID, "target", t.Key())
	files := []string{dumper.LogFile, dumper.StatsFile}
	if cerr != nil {
		files = nil // CRIU failed after the commit: its files may be missing
	}
	if _, err := d.store.Seal(context.WithoutCancel(ctx), c.ID, stats, workDir, files...); err != nil {
		return errors.Join(cerr, err)
	}
	if cerr != nil {
		return savedBut(c, cerr)
	}
	return nil
}

// savedBut is CRIU failing after the checkpoint was committed: it is
// complete and listed, so it is kept and the error says what went wrong.
func savedBut(c *store.Checkpoint, err error) error {
	return fmt.Errorf("checkpoint %s was saved, but then: %w", c.ID, err)
}

// recordTarget records t once a checkpoint of it is published, unless its
// record is already this incarnation's: a target is known only once a
// checkpoint of it exists, or ckptd launched or restored it.
func (d *Daemon) recordTarget(ctx context.Context, t *store.Target) error {
	cur, err := d.store.GetTarget(ctx, t.Key())
	if err == nil && cur.PID == t.PID && cur.StartTime == t.StartTime {
		return nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return d.store.PutTarget(ctx, t)
}

// liveTarget returns the record of ref, or a new one (not yet recorded)
// for a host process seen for the first time, and checks that it runs.
func (d *Daemon) liveTarget(ctx context.Context, ref store.TargetRef) (*store.Target, error) {
	t, err := d.store.GetTarget(ctx, ref.Key())
	switch {
	case err == nil && d.alive(t):
		return t, nil
	case err == nil && ref.Kind == store.KindWorkload:
		return nil, fmt.Errorf("workload %q is not running: %w", ref.Name, errdefs.ErrFailedPrecondition)
	case err != nil && !errdefs.IsNotFound(err):
		return nil, err
	}
	// A host process: new to us, or its PID was reused by another.
	if ref.PID == 1 {
		return nil, fmt.Errorf("pid 1 is this host's init: CRIU cannot seize it, and ckptd does not checkpoint it: %w", errdefs.ErrFailedPrecondition)
	}
	st, err := proc.ReadStat(ref.PID)
	if err != nil || st.State == 'Z' {
		return nil, fmt.Errorf("process %d: %w", ref.PID, errdefs.ErrNotFound)
	}
	ref.Command, _ = proc.Cmdline(ref.PID)
	return &store.Target{TargetRef: ref, StartTime: st.StartTime, Created: time.Now().UTC()}, nil
}

// checkpointName validates a chosen name or picks <target>-<n>, n above
// every number the target's checkpoints have had.
func (d *Daemon) checkpointName(ctx context.Context, name string, ref store.TargetRef) (string, error) {
	if name != "" {
		if err := store.ValidateName(name); err != nil {
			return "", err
		}
		taken, err := d.store.NameTaken(ctx, name)
		if err != nil {
			return "", err
		}
		if taken {
			return "", fmt.Errorf("checkpoint name %q is taken: choose another with --name: %w", name, errdefs.ErrAlreadyExists)
		}
		return name, nil
	}
	base := ref.Name
	switch ref.Kind {
	case store.KindProcess:
		base = "pid" + strconv.Itoa(ref.PID)
	case store.KindContainer:
		base = path.Base(ref.Name) // the container ID
	}
	return d.store.NextName(ctx, base)
}

func dumperOptions(o store.Options) dumper.Options {
	return dumper.Options{
		LeaveRunning: o.LeaveRunning, TCPEstablished: o.TCPEstablished,
		FileLocks: o.FileLocks, ExtUnixSk: o.ExtUnixSk, ShellJob: o.ShellJob,
		LinkRemap: o.LinkRemap, GhostLimit: o.GhostLimit, ConfigFile: o.CRIUConfig,
	}
}

func convertStats(s *stats.DumpStatsEntry) *store.DumpStats {
	if s == nil {
		return nil
	}
	return &store.DumpStats{
		FreezingTime: s.GetFreezingTime(), FrozenTime: s.GetFrozenTime(),
		MemdumpTime: s.GetMemdumpTime(), MemwriteTime: s.GetMemwriteTime(),
		PagesScanned: s.GetPagesScanned(), PagesWritten: s.GetPagesWritten(),
		PagesSkippedParent: s.GetPagesSkippedParent(),
	}
}
