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

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/keylock"
	"github.com/ckptd/ckptd/restorer"
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
	// Defaults are create's defaults for LinkRemap and GhostLimit.
	Defaults store.Options
}

// Daemon holds ckptd's parts. Build it with New.
type Daemon struct {
	log        *slog.Logger
	store      *store.Store
	dumper     Dumper
	restorer   Restorer
	sup        *workload.Supervisor
	criu       criu.Binary
	containers Containers
	ctrs       ContainerLister
	images     ContainerImages
	peer       *tls.Config
	defaultNS  string
	ctrdAddr   string
	host       HostInfo
	defaults   store.Options

	locks *keylock.Locks // one per target: work on a target is serialized
	mu    sync.Mutex
	busy  map[string]int // checkpoint id -> restores reading it
}

// HostInfo describes the machine checkpoints are taken on.
type HostInfo struct {
	Hostname string
	Kernel   string
	CPUModel string
}

// New wires a Daemon from its parts and thaws any container that a
// previous ckptd paused for a checkpoint and died before resuming.
func New(ctx context.Context, p Parts) *Daemon {
	d := &Daemon{
		log: p.Log, store: p.Store, dumper: p.Dumper, restorer: p.Restorer, sup: p.Supervisor, criu: p.CRIU,
		containers: p.Containers, ctrs: p.Containers, images: p.Containers, peer: p.Peer, defaultNS: p.ContainerNamespace, ctrdAddr: p.ContainerdAddress,
		host: readHostInfo(), defaults: p.Defaults,
		locks: keylock.New(),
		busy:  map[string]int{},
	}
	d.resumePausedContainers(ctx)
	return d
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

// markBusy protects a checkpoint from rm while a restore reads it.
func (d *Daemon) markBusy(id string) (release func()) {
	d.mu.Lock()
	d.busy[id]++
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		if d.busy[id]--; d.busy[id] == 0 {
			delete(d.busy, id)
		}
		d.mu.Unlock()
	}
}

// Remove deletes checkpoints; see store.Remove. Checkpoints being restored
// are refused.
func (d *Daemon) Remove(ctx context.Context, refs []string, recursive bool) ([]string, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("no checkpoint given: %w", errdefs.ErrInvalidArgument)
	}
	d.mu.Lock()
	for _, ref := range refs {
		if c, err := d.store.Get(ctx, ref); err == nil && d.busy[c.ID] > 0 {
			d.mu.Unlock()
			return nil, fmt.Errorf("checkpoint %s is being restored: %w", c.Name, errdefs.ErrFailedPrecondition)
		}
	}
	d.mu.Unlock()
	return d.store.Remove(ctx, refs, recursive)
}

// List returns checkpoints, of one target when target is not empty.
func (d *Daemon) List(ctx context.Context, target string) ([]*store.Checkpoint, error) {
	if target == "" {
		return d.store.List(ctx, store.Filter{})
	}
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return nil, err
	}
	return d.store.List(ctx, store.Filter{TargetKey: ref.Key()})
}
