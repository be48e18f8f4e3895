// Package activator scales workloads to zero. It holds a workload's
// published host ports itself and proxies every connection to it; a
// workload idle for its period is put to sleep (checkpointed and
// stopped), and the next connection wakes it (restores it) and is then
// delivered to it, held meanwhile, with no retry by the client. A wake
// that fails resets the connection it held.
//
// zeropod redirects a port inside the namespace with eBPF while the
// server is down and proxies only the first connection; here every
// connection passes through ckptd, which is how it sees the workload idle.
package activator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Workloads is what the activator wakes and puts to sleep; the daemon is
// the real one. Wake restores name and returns once it listens;
// Hibernate checkpoints and stops it.
type Workloads interface {
	Wake(ctx context.Context, name string) error
	Hibernate(ctx context.Context, name string) error
}

// Port forwards a host port to the workload's address and port.
type Port struct {
	Host    uint16
	Backend string // IP:PORT inside the workload's network
}

// Config is one workload the activator holds the ports of.
type Config struct {
	Name      string
	Ports     []Port
	IdleAfter time.Duration // 0: it sleeps only when asked (Hibernate)
	Asleep    bool          // it is hibernated now
}

// Activator holds the ports of workloads that scale to zero.
type Activator struct {
	log *slog.Logger
	w   Workloads
	// ctx bounds the wakes and hibernations the activator starts by
	// itself; it ends with Close.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	held   map[string]*entry
}

// New makes an activator that wakes and hibernates through w.
func New(log *slog.Logger, w Workloads) *Activator {
	ctx, cancel := context.WithCancel(context.Background())
	return &Activator{log: log, w: w, ctx: ctx, cancel: cancel, held: map[string]*entry{}}
}

// Hold listens on cfg's host ports; a workload already held is replaced.
// On failure no port of it is held.
func (a *Activator) Hold(cfg Config) error {
	if len(cfg.Ports) == 0 {
		return fmt.Errorf("%s publishes no TCP port to hold", cfg.Name)
	}
	a.Release(cfg.Name)
	e := &entry{a: a, cfg: cfg, asleep: cfg.Asleep, last: time.Now(), done: make(chan struct{})}
	for _, p := range cfg.Ports {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p.Host))
		if err != nil {
			e.close()
			return fmt.Errorf("hold host port %d for %s: %w", p.Host, cfg.Name, err)
		}
		e.lns = append(e.lns, ln)
	}
	a.mu.Lock()
	a.held[cfg.Name] = e
	a.mu.Unlock()
	for i, ln := range e.lns {
		go e.accept(ln, cfg.Ports[i].Backend)
	}
	if cfg.IdleAfter > 0 {
		go e.watchIdle()
	}
	return nil
}

// Release lets go of name's ports; its proxied connections end.
func (a *Activator) Release(name string) {
	a.mu.Lock()
	e := a.held[name]
	delete(a.held, name)
	a.mu.Unlock()
	if e != nil {
		e.close()
	}
}

// Close lets go of every port.
func (a *Activator) Close() {
	a.cancel()
	a.mu.Lock()
	held := a.held
	a.held = map[string]*entry{}
	a.mu.Unlock()
	for _, e := range held {
		e.close()
	}
}

// Switch puts name to sleep now, once no connection is open, or wakes
// it now, as a connection would.
func (a *Activator) Switch(ctx context.Context, name string, asleep bool) error {
	e, err := a.entry(name)
	if err != nil {
		return err
	}
	if asleep {
		return e.sleep(ctx, false)
	}
	return e.wake(ctx)
}

// ErrNotHeld: the activator holds no ports of the workload.
var ErrNotHeld = errors.New("its ports are not held by ckptd (run it with --idle-after)")

func (a *Activator) entry(name string) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.held[name]
	if e == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrNotHeld)
	}
	return e, nil
}
