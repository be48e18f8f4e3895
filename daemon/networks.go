package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

// Networks wires a workload's own network namespace; *network.Manager is
// the real one.
type Networks interface {
	Join(ctx context.Context, id string, pid int, s network.Spec) (network.Attachment, error)
	Begin(id string, s network.Spec) (network.Pending, error)
	Leave(ctx context.Context, a network.Attachment) error
}

// netSpec checks run's --net and --publish.
func (d *Daemon) netSpec(mode string, ports []network.Port) (network.Spec, error) {
	if mode == "" {
		// A workload's own network is the default where ckptd has one.
		mode = network.Host
		if d.networks != nil {
			mode = network.Private
		}
	}
	switch mode {
	case network.Host:
		if len(ports) > 0 {
			return network.Spec{}, fmt.Errorf("publishing ports needs --net %s: %w", network.Private, errdefs.ErrInvalidArgument)
		}
		return network.Spec{Mode: network.Host}, nil
	case network.Private, network.None:
		if d.networks == nil {
			return network.Spec{}, fmt.Errorf("--net %s: workload networks are unavailable here: %v: %w", mode, d.networksErr, errdefs.ErrFailedPrecondition)
		}
		return network.Spec{Mode: mode, Ports: ports}, nil
	}
	return network.Spec{}, fmt.Errorf("--net %q: want %s, %s or %s: %w", mode, network.Private, network.None, network.Host, errdefs.ErrInvalidArgument)
}

// joinNetwork wires t's own namespace (its root, pid, not yet running).
func (d *Daemon) joinNetwork(ctx context.Context, t *store.Target, s network.Spec) error {
	if s.Mode == network.Host {
		return nil
	}
	a, err := d.networks.Join(ctx, t.Name+"-"+strconv.Itoa(t.PID), t.PID, s)
	if err != nil {
		return fmt.Errorf("network of %s: %w", t.Name, err)
	}
	t.Network = &a
	return nil
}

// releaseEndedNetworks is leaveEndedNetworks on its own, for when a
// child ended (the supervisor says so) or ps saw a workload ended out of
// ckptd's sight: it runs apart from the request, which must not wait on
// a target's lock or on the CNI plugins.
func (d *Daemon) releaseEndedNetworks() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.leaveEndedNetworks(ctx)
}

// leaveEndedNetworks lets go of the networks of the workloads that
// ended: at start, those that ended while no ckptd watched.
func (d *Daemon) leaveEndedNetworks(ctx context.Context) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return
	}
	for _, t := range ts {
		if t.Network != nil && !d.alive(t) {
			d.leaveNetwork(ctx, t)
		}
	}
}

// sweepNetworks lets go, at start, of the namespaces no target names:
// ckptd stopped between making one and recording it (a run, restore,
// wake or incoming migration cut short). CNI's cache says what to undo.
func (d *Daemon) sweepNetworks(ctx context.Context) {
	if d.networks == nil {
		return
	}
	dir := d.store.Layout().NetNSDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		d.log.Error("look for network namespaces no target names", "err", err)
		return
	}
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		d.log.Error("look for network namespaces no target names", "err", err)
		return
	}
	named := map[string]bool{}
	for _, t := range ts {
		if t.Network != nil {
			named[t.Network.NetNS] = true
		}
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if named[path] {
			continue
		}
		if err := d.networks.Leave(ctx, network.Attachment{ID: e.Name(), NetNS: path}); err != nil {
			d.log.Error("let go of a network namespace no target names", "netns", path, "err", err)
			continue
		}
		d.log.Warn("let go of a network namespace no target names (ckptd stopped before recording it)", "netns", path)
	}
}

// leaveNetwork detaches t's network and forgets it in t's record.
func (d *Daemon) leaveNetwork(ctx context.Context, t *store.Target) {
	if d.networks == nil {
		return
	}
	unlock, err := d.locks.Lock(ctx, t.Key())
	if err != nil {
		return
	}
	defer unlock()
	cur, err := d.store.GetTarget(ctx, t.Key())
	if err != nil || cur.PID != t.PID {
		return
	}
	if err := d.releaseNetwork(ctx, cur); err != nil {
		d.log.Warn("release a workload's network", "target", t.Key(), "err", err)
	}
}

// releaseNetwork detaches the network of t, which has ended, and forgets
// it in t's record. The caller holds t's lock.
func (d *Daemon) releaseNetwork(ctx context.Context, t *store.Target) error {
	if t.Network == nil || d.networks == nil || d.alive(t) || t.Hibernated() {
		return nil // a workload asleep keeps its network for its wake
	}
	if t.ScaleToZero != nil {
		d.activator.Release(t.Name)
	}
	if err := d.networks.Leave(ctx, *t.Network); err != nil {
		return err
	}
	d.log.Info("workload network released", "target", t.Key(), "ip", t.Network.IP)
	t.Network = nil
	if e, ok := d.exitOf(t); ok && t.Exit == "" {
		t.Exit = e // kept here too: keepExit gives up on the lock this holds
	}
	if err := d.store.PutTarget(ctx, t); err != nil {
		return fmt.Errorf("record a released network: %w", err)
	}
	return nil
}

// parsePorts reads --publish values: HOSTPORT:PORT[/tcp|/udp].
func parsePorts(specs []string) ([]network.Port, error) {
	var out []network.Port
	for _, s := range specs {
		ports, proto, _ := strings.Cut(s, "/")
		host, inside, ok := strings.Cut(ports, ":")
		h, herr := strconv.ParseUint(host, 10, 16)
		c, cerr := strconv.ParseUint(inside, 10, 16)
		if proto == "" {
			proto = "tcp"
		}
		if !ok || herr != nil || cerr != nil || h == 0 || c == 0 || (proto != "tcp" && proto != "udp") {
			return nil, fmt.Errorf("--publish %q: want HOSTPORT:PORT, optionally /tcp or /udp: %w", s, errdefs.ErrInvalidArgument)
		}
		out = append(out, network.Port{HostPort: uint16(h), ContainerPort: uint16(c), Protocol: proto})
	}
	return out, nil
}

// leaveJoined undoes joinNetwork for a workload that never ran.
func (d *Daemon) leaveJoined(ctx context.Context, t *store.Target) error {
	if t.Network == nil {
		return nil
	}
	return d.networks.Leave(ctx, *t.Network)
}
