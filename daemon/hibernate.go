package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/ckptd/ckptd/activator"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

// Activator holds the published ports of workloads that scale to zero;
// *activator.Activator is the real one. Switch puts one to sleep or wakes
// it, in turn with the connections it holds.
type Activator interface {
	Hold(cfg activator.Config) error
	Release(name string)
	Switch(ctx context.Context, name string, asleep bool) error
}

// sleeper is what the activator wakes and puts to sleep: the daemon.
type sleeper struct{ d *Daemon }

func (s sleeper) Wake(ctx context.Context, name string) error { return s.d.wakeWorkload(ctx, name) }
func (s sleeper) Hibernate(ctx context.Context, name string) error {
	return s.d.hibernateWorkload(ctx, name)
}

// scaleToZero checks run's --idle-after: ckptd holds the published TCP
// ports of a workload in its own network.
func scaleToZero(s network.Spec, idle time.Duration) (*store.ScaleToZero, error) {
	if s.Mode != network.Private || len(s.Ports) == 0 {
		return nil, fmt.Errorf("--idle-after needs --net %s and a published port, on which ckptd wakes it: %w", network.Private, errdefs.ErrInvalidArgument)
	}
	if idle < 0 {
		return nil, fmt.Errorf("--idle-after %s: want a duration of 0 (hibernate by hand) or more: %w", idle, errdefs.ErrInvalidArgument)
	}
	for _, p := range s.Ports {
		if p.Protocol != "tcp" {
			return nil, fmt.Errorf("--idle-after: ckptd holds TCP ports only, not %d/%s: %w", p.HostPort, p.Protocol, errdefs.ErrInvalidArgument)
		}
	}
	return &store.ScaleToZero{IdleAfter: idle, Ports: s.Ports}, nil
}

// holdPorts has the activator hold t's ports.
func (d *Daemon) holdPorts(t *store.Target) error {
	if t.Network == nil || t.Network.IP == "" {
		return fmt.Errorf("%s has no address to forward its ports to", t.Name)
	}
	cfg := activator.Config{Name: t.Name, IdleAfter: t.ScaleToZero.IdleAfter, Asleep: t.Hibernated()}
	for _, p := range t.ScaleToZero.Ports {
		backend := net.JoinHostPort(t.Network.IP, strconv.Itoa(int(p.ContainerPort)))
		cfg.Ports = append(cfg.Ports, activator.Port{Host: p.HostPort, Backend: backend})
	}
	return d.activator.Hold(cfg)
}

// holdScaledToZero holds, at start, the ports of the workloads that scale
// to zero and still run or sleep.
func (d *Daemon) holdScaledToZero(ctx context.Context) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		d.log.Error("look for workloads that scale to zero", "err", err)
		return
	}
	for _, t := range ts {
		if t.ScaleToZero == nil || !(t.Hibernated() || d.alive(t)) {
			continue
		}
		if err := d.holdPorts(t); err != nil {
			d.log.Error("hold the ports of a workload that scales to zero", "target", t.Key(), "err", err)
		}
	}
}

// Hibernate puts a workload that scales to zero to sleep now.
func (d *Daemon) Hibernate(ctx context.Context, name string) (*TargetStatus, error) {
	return d.switchWorkload(ctx, name, true)
}

// Wake wakes a workload that scales to zero now.
func (d *Daemon) Wake(ctx context.Context, name string) (*TargetStatus, error) {
	return d.switchWorkload(ctx, name, false)
}

func (d *Daemon) switchWorkload(ctx context.Context, name string, asleep bool) (*TargetStatus, error) {
	t, err := d.workload(ctx, name)
	if err != nil {
		return nil, err
	}
	if t.ScaleToZero == nil {
		return nil, fmt.Errorf("%s does not scale to zero: run it with --net private, -p and --idle-after: %w", name, errdefs.ErrFailedPrecondition)
	}
	if err := d.activator.Switch(ctx, name, asleep); err != nil {
		if errors.Is(err, activator.ErrNotHeld) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
		}
		return nil, err
	}
	if t, err = d.store.GetTarget(ctx, t.Key()); err != nil {
		return nil, err
	}
	return d.status(t), nil
}

// hibernateWorkload checkpoints name and stops it, keeping its network:
// its next connection restores it into the same namespace.
func (d *Daemon) hibernateWorkload(ctx context.Context, name string) error {
	start := time.Now()
	c, err := d.Create(ctx, CreateRequest{Target: name, hibernate: true})
	if err != nil {
		return err
	}
	d.log.Info("hibernated", "workload", name, "checkpoint", c.Name, "took", time.Since(start))
	d.events.Publish(events.Event{Kind: events.Hibernated, Target: c.Target.Key(), Checkpoint: c.ID, Name: c.Name, Duration: time.Since(start)})
	return nil
}

// markHibernated records t asleep in c, under t's lock, before its end
// is seen: its network stays.
func (d *Daemon) markHibernated(ctx context.Context, t *store.Target, c *store.Checkpoint) error {
	cur, err := d.store.GetTarget(ctx, t.Key())
	if err != nil {
		return err
	}
	if cur.ScaleToZero == nil {
		return fmt.Errorf("%s does not scale to zero", t.Name)
	}
	cur.ScaleToZero.Checkpoint, cur.ScaleToZero.WakeError = c.ID, ""
	return d.store.PutTarget(ctx, cur)
}

// wakeWorkload restores name from the checkpoint it sleeps in, into the
// network it kept. A wake that fails leaves it asleep, with the reason,
// and the checkpoint kept.
func (d *Daemon) wakeWorkload(ctx context.Context, name string) error {
	start := time.Now()
	key := store.TargetRef{Kind: store.KindWorkload, Name: name}.Key()
	t, err := d.store.GetTarget(ctx, key)
	if err != nil {
		return err
	}
	if !t.Hibernated() {
		return d.awake(t)
	}
	c, release, err := d.acquire(ctx, t.ScaleToZero.Checkpoint, true)
	if err != nil {
		return d.wakeFailed(ctx, t, fmt.Errorf("its checkpoint: %w", err))
	}
	defer release()
	unlock, err := d.locks.Lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if t, err = d.store.GetTarget(ctx, key); err != nil {
		return err
	}
	if !t.Hibernated() || t.ScaleToZero.Checkpoint != c.ID {
		return d.awake(t) // woken or ended meanwhile
	}
	awake := *t.ScaleToZero
	awake.Checkpoint, awake.WakeError = "", ""
	how := &restoreHow{Keep: t.Network, ScaleToZero: &awake}
	nt, err := d.restore(ctx, c, c.Target, d.store.Dir(c.ID), d.verifyAsync(ctx, c), how)
	if err != nil {
		return d.wakeFailed(ctx, t, err)
	}
	d.tellRestored(ctx, nt, c)
	d.log.Info("woken", "workload", name, "pid", nt.PID, "checkpoint", c.Name, "took", time.Since(start))
	d.events.Publish(events.Event{Kind: events.Woken, Target: key, Checkpoint: c.ID, Name: c.Name, Duration: time.Since(start)})
	return nil
}

// awake is nil when t runs: a wake finds it so after another woke it.
func (d *Daemon) awake(t *store.Target) error {
	if d.alive(t) {
		return nil
	}
	return fmt.Errorf("%s is neither running nor asleep: %w", t.Name, errdefs.ErrFailedPrecondition)
}

// wakeFailed records why t did not wake; it sleeps on.
func (d *Daemon) wakeFailed(ctx context.Context, t *store.Target, why error) error {
	d.events.Publish(events.Event{Kind: events.Failed, Op: "wake", Target: t.Key(), Err: why.Error()})
	t.ScaleToZero.WakeError = why.Error()
	if err := d.store.PutTarget(context.WithoutCancel(ctx), t); err != nil {
		d.log.Error("record a failed wake", "target", t.Key(), "err", err)
	}
	return fmt.Errorf("wake %s: %w", t.Name, why)
}

// endHibernation ends a workload that sleeps: its ports and network go,
// its checkpoint stays. The caller holds t's lock.
func (d *Daemon) endHibernation(ctx context.Context, t *store.Target) error {
	d.activator.Release(t.Name)
	t.ScaleToZero.Checkpoint = ""
	t.Exit = "ended while it slept"
	if err := d.store.PutTarget(ctx, t); err != nil {
		return err
	}
	return d.releaseNetwork(ctx, t)
}
