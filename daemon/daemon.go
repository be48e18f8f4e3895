// Package daemon is ckptd's core: it resolves targets, serializes work per
// target, and drives dumper, restorer, store and supervisor through create,
// restore and the rest. api/ exposes it; cmd/ckptd wires it.
package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/activator"
	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/ingest"
	"github.com/ckptd/ckptd/keylock"
	"github.com/ckptd/ckptd/logfile"
	"github.com/ckptd/ckptd/restorer"
	"github.com/ckptd/ckptd/schedule"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/workload"
)

// Version is set at build time.
var Version = "dev"

// Dumper writes a process tree's state; dumper.Dumper is the real one.
type Dumper interface {
	Dump(ctx context.Context, req dumper.Request) (dumper.Result, error)
}

// Restorer brings a tree back; restorer.Restorer is the real one.
type Restorer interface {
	Restore(ctx context.Context, req restorer.Request) (restorer.Result, error)
}

// Containers checkpoints and restores containerd containers;
// *container.Runtime is the real one.
type Containers interface {
	Checkpoint(ctx context.Context, req container.CheckpointRequest) (container.CheckpointResult, error)
	Restore(ctx context.Context, req container.RestoreRequest) (container.RestoreResult, error)
	ResumeMarked(ctx context.Context, marker string) (container.Ref, error)
}

// ContainerLister says what containerd runs; *container.Runtime is the
// real one.
type ContainerLister interface {
	Get(ctx context.Context, ref container.Ref) (container.Info, error)
	List(ctx context.Context) ([]container.Info, error)
	Version(ctx context.Context) (string, error)
}

// ContainerImages tells what recreating a container elsewhere needs, and
// whether this host has it; *container.Runtime is the real one.
type ContainerImages interface {
	Describe(ctx context.Context, ref container.Ref) (container.Source, error)
	CheckImage(ctx context.Context, ns string, src container.Source) error
}

// Parts are what a Daemon drives. Every field is required.
type Parts struct {
	Log        *slog.Logger
	Store      *store.Store
	Dumper     Dumper
	Restorer   Restorer
	Supervisor *workload.Supervisor
	CRIU       criu.Binary
	Containers interface {
		Containers
		ContainerLister
		ContainerImages
	}
	ContainerNamespace string // of ctr:ID targets
	ContainerdAddress  string // for messages
	// Peer is the mutual-TLS configuration for migrations to and from
	// other ckptds; nil when none is configured.
	Peer *tls.Config
	// PeerInfo says which CA and peers are accepted, for check.
	PeerInfo string
	// PeerTimeout ends a migration whose peer makes no progress for that
	// long, unless the request names its own (0: migrate.DefaultIdle).
	PeerTimeout time.Duration
	// PeerStreams caps the connections of a page stream (0: as many as
	// cores, at most 4).
	PeerStreams int
	// Defaults are create's defaults for LinkRemap and GhostLimit.
	Defaults store.Options
	// ChainDepth caps the ancestors an incremental checkpoint reads pages
	// from; 0 stores every checkpoint whole.
	ChainDepth int
	// Events receives what happens; nil gets a hub nobody listens to.
	Events *events.Hub
	// Terminals holds workloads' terminal sessions; nil: run -t is refused.
	Terminals Terminals
	// Trust is what this host allows a container checkpoint from outside
	// (an import, a pull, a migration) to ask for.
	Trust ingest.Policy
	// Networks gives workloads their own network namespaces; nil: run
	// --net private and none are refused with NetworksErr.
	Networks    Networks
	NetworksErr error
	// Freezer stops a group's members at one instant; nil: group
	// checkpoints are refused with FreezerErr.
	Freezer    Freezer
	FreezerErr error
	// Logs bounds workloads' logs unless run sets its own.
	Logs logfile.Policy
	// Limits bounds workloads' memory and CPU; nil: run --memory and
	// --cpus are refused with LimitsErr.
	Limits    Limiter
	LimitsErr error
}

// Daemon holds ckptd's parts. Build it with New.
type Daemon struct {
	log         *slog.Logger
	store       *store.Store
	dumper      Dumper
	restorer    Restorer
	sup         *workload.Supervisor
	criu        criu.Binary
	containers  Containers
	ctrs        ContainerLister
	images      ContainerImages
	peer        *tls.Config
	peerInfo    string
	peerIdle    time.Duration
	peerStreams int
	defaultNS   string
	ctrdAddr    string
	host        HostInfo
	defaults    store.Options
	chainDepth  int

	terms Terminals
	trust ingest.Policy

	networks       Networks
	networksErr    error
	activator      Activator
	closeActivator func()
	freezer        Freezer
	freezerErr     error
	logs           logfile.Policy
	limits         Limiter
	limitsErr      error
	stopBackground context.CancelFunc // log rotation, the restores at start
	background     sync.WaitGroup

	locks  *keylock.Locks // one per target: work on a target is serialized
	sched  *schedule.Scheduler
	events *events.Hub

	mu        sync.Mutex
	committed map[string]time.Time // outgoing migration id -> until when its destination may restore
	ending    map[int]bool         // roots ckptd is ending itself (markEnding)
	halted    map[string]bool      // targets whose restarts a user turned off
}

// HostInfo describes the machine checkpoints are taken on.
type HostInfo struct {
	Hostname string
	Kernel   string
	CPUModel string
}

// New wires a Daemon from its parts, thaws any container that a previous
// ckptd paused for a checkpoint and died before resuming, and starts the
// stored schedules. Close stops them.
func New(ctx context.Context, p Parts) (*Daemon, error) {
	d := &Daemon{
		log: p.Log, store: p.Store, dumper: p.Dumper, restorer: p.Restorer, sup: p.Supervisor, criu: p.CRIU,
		containers: p.Containers, ctrs: p.Containers, images: p.Containers, peer: p.Peer, peerInfo: p.PeerInfo, peerIdle: p.PeerTimeout, peerStreams: p.PeerStreams, defaultNS: p.ContainerNamespace, ctrdAddr: p.ContainerdAddress,
		host: readHostInfo(), defaults: p.Defaults, chainDepth: p.ChainDepth, terms: p.Terminals, trust: p.Trust,
		locks: keylock.New(), committed: map[string]time.Time{}, ending: map[int]bool{}, halted: map[string]bool{}, events: p.Events,
		networks: p.Networks, networksErr: p.NetworksErr, freezer: p.Freezer, freezerErr: p.FreezerErr, logs: p.Logs, limits: p.Limits, limitsErr: p.LimitsErr,
	}
	if d.events == nil {
		d.events = events.NewHub()
	}
	d.dumper = endingDumper{Dumper: p.Dumper, d: d}
	if d.logs.MaxSize == 0 {
		d.logs = logfile.Policy{MaxSize: logfile.DefaultMaxSize, MaxFiles: logfile.DefaultMaxFiles}
	}
	d.thawLeftGroups(ctx)
	d.resumePausedContainers(ctx)
	d.endUnfilled(ctx)
	d.leaveEndedNetworks(ctx)
	d.sweepNetworks(ctx)
	a := activator.New(p.Log, sleeper{d})
	d.activator, d.closeActivator = a, a.Close
	d.holdScaledToZero(ctx)
	if d.sup != nil {
		d.sup.OnEnd(func(pid int) { d.releaseEndedNetworks(); d.restartEnded(pid) })
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stopBackground = stop
	go d.rotateLogs(rctx)
	sched, err := schedule.New(ctx, p.Log, p.Store, scheduled{d}, d.events)
	if err != nil {
		return nil, err
	}
	d.sched = sched
	d.background.Add(1)
	go func() { defer d.background.Done(); d.restorePersisted(rctx) }()
	return d, nil
}

// Subscribe streams events from now on; cancel ends the subscription.
func (d *Daemon) Subscribe(ctx context.Context) (*events.Sub, func(), error) {
	// Events speak of every user's targets and checkpoints.
	if err := access.From(ctx).Need("events"); err != nil {
		return nil, nil, err
	}
	sub, cancel := d.events.Subscribe()
	return sub, cancel, nil
}

// Close stops the schedules, waiting for checkpoints they are taking.
func (d *Daemon) Close() {
	d.stopBackground()
	d.background.Wait()
	d.sched.Close()
	d.closeActivator()
	// What ended just before is let go of now, not at the next start,
	// which might use another state root.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.leaveEndedNetworks(ctx)
}

func readHostInfo() HostInfo {
	h := HostInfo{}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// CommittedUntil is when the last committed outgoing migration stops
// waiting for its destination (zero: none). A stopping ckptd waits that
// long: cut short, the source would resume while the destination runs.
func (d *Daemon) CommittedUntil() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var last time.Time
	for _, t := range d.committed {
		if t.After(last) {
			last = t
		}
	}
	return last
}

func (d *Daemon) holdCommitted(id string, until time.Time) (release func()) {
	d.mu.Lock()
	d.committed[id] = until
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.committed, id)
		d.mu.Unlock()
	}
}

// RemoveOptions says what happens to the descendants of a removed
// checkpoint: by default one with descendants is refused.
type RemoveOptions struct {
	Recursive bool // remove them too
	Relink    bool // keep them: its children take its pages and its parent
}

// Remove deletes checkpoints, indexed or quarantined; see store.Remove.
// Checkpoints being restored or inspected are refused.
func (d *Daemon) Remove(ctx context.Context, refs []string, o RemoveOptions) ([]string, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("no checkpoint given: %w", errdefs.ErrInvalidArgument)
	}
	if o.Recursive && o.Relink {
		return nil, fmt.Errorf("--recursive removes descendants, --relink keeps them: choose one: %w", errdefs.ErrInvalidArgument)
	}
	refs, removedGroups, err := d.removeGroups(ctx, refs)
	if err != nil || len(refs) == 0 {
		return removedGroups, err
	}
	if err := d.ownAll(ctx, refs); err != nil {
		return removedGroups, err
	}
	remove := func(ctx context.Context, refs []string) ([]string, error) {
		return d.store.Remove(ctx, refs, o.Recursive)
	}
	if o.Relink {
		remove = d.store.RemoveRelinking
	}
	ids, err := remove(ctx, refs)
	ids = append(removedGroups, ids...)
	if len(ids) > 0 {
		d.log.Info("checkpoints removed", "ids", ids)
	}
	for _, id := range ids {
		d.events.Publish(events.Event{Kind: events.Removed, Checkpoint: id})
	}
	return ids, err
}

// List returns checkpoints, of one target when target is not empty.
func (d *Daemon) List(ctx context.Context, target string) ([]*store.Checkpoint, error) {
	var f store.Filter
	if target != "" {
		ref, err := d.resolveRef(ctx, target)
		if err != nil {
			return nil, err
		}
		f.TargetKey = ref.Key()
	}
	cs, err := d.store.List(ctx, f)
	listed := cs[:0]
	for _, c := range cs {
		if d.listed(c) {
			listed = append(listed, c)
		}
	}
	return ownedCheckpoints(ctx, listed), err
}

// Quarantined lists checkpoints held out of the index.
func (d *Daemon) Quarantined(ctx context.Context) ([]store.Quarantined, error) {
	if err := access.From(ctx).Need("the quarantine"); err != nil {
		return nil, err
	}
	return d.store.ListQuarantined(ctx)
}

// Verify checks a checkpoint's files; readmit brings a quarantined one
// that passes back into the index.
func (d *Daemon) Verify(ctx context.Context, ref string, readmit bool) (*store.VerifyResult, error) {
	if err := d.ownAll(ctx, []string{ref}); err != nil {
		return nil, err
	}
	if err := access.From(ctx).Need("readmitting"); readmit && err != nil {
		return nil, err
	}
	res, err := d.store.Check(ctx, ref, readmit)
	if err != nil {
		return nil, err
	}
	if res.Readmitted {
		d.log.Info("quarantined checkpoint verified and readmitted", "id", res.Checkpoint.ID, "name", res.Checkpoint.Name)
	}
	return res, nil
}
