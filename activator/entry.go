package activator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// entry is one workload whose ports the activator holds.
type entry struct {
	a   *Activator
	cfg Config
	lns []net.Listener

	mu     sync.Mutex
	asleep bool
	// busy is set while a wake or a hibernation runs, and closed when it
	// ends: a connection waits for it, then looks again.
	busy   chan struct{}
	active int       // connections proxied now
	last   time.Time // when one last began or ended
	conns  map[net.Conn]struct{}
	done   chan struct{} // closed by close
	closed bool
}

// dialTimeout bounds the connection to the woken workload, which listens
// once the restore returns.
const dialTimeout = 5 * time.Second

func (e *entry) accept(ln net.Listener, backend string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.a.log.Warn("activator: accept", "workload", e.cfg.Name, "err", err)
			}
			return
		}
		go e.serve(c, backend)
	}
}

// serve delivers c to the workload, waking it first if it sleeps. A
// wake that fails resets c.
func (e *entry) serve(c net.Conn, backend string) {
	if !e.begin(c) {
		reset(c)
		return
	}
	defer e.end(c)
	ctx, cancel := context.WithCancel(e.a.ctx)
	defer cancel()
	if err := e.wake(ctx); err != nil {
		e.a.log.Error("activator: wake failed; the connection is reset", "workload", e.cfg.Name, "from", c.RemoteAddr(), "err", err)
		reset(c)
		return
	}
	b, err := net.DialTimeout("tcp", backend, dialTimeout)
	if err != nil {
		e.a.log.Error("activator: the workload does not answer; the connection is reset", "workload", e.cfg.Name, "backend", backend, "err", err)
		reset(c)
		return
	}
	proxy(c, b)
}

// wake returns once the workload is awake, waking it if it sleeps.
func (e *entry) wake(ctx context.Context) error {
	if err := e.settle(ctx); err != nil {
		return err
	}
	if !e.asleep {
		e.mu.Unlock()
		return nil
	}
	return e.turn(false, func() error { return e.a.w.Wake(ctx, e.cfg.Name) })
}

// sleep hibernates the workload: when idle says so, only if it is still
// idle; by hand, once no connection is open.
func (e *entry) sleep(ctx context.Context, idle bool) error {
	if err := e.settle(ctx); err != nil {
		return err
	}
	if e.asleep {
		e.mu.Unlock()
		return nil
	}
	if e.active > 0 || (idle && time.Since(e.last) < e.cfg.IdleAfter) {
		n := e.active
		e.mu.Unlock()
		if idle {
			return nil
		}
		return fmt.Errorf("%s has %d open connection(s): try again once they end", e.cfg.Name, n)
	}
	return e.turn(true, func() error { return e.a.w.Hibernate(ctx, e.cfg.Name) })
}

// settle waits until no wake or hibernation runs, and returns with e.mu
// held; on an error, without it.
func (e *entry) settle(ctx context.Context) error {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return fmt.Errorf("%s: %w", e.cfg.Name, ErrNotHeld)
		}
		busy := e.busy
		if busy == nil {
			return nil
		}
		e.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// turn runs act, a wake or a hibernation, as the one that runs now; the
// workload is asleep afterwards if act succeeded. Called with e.mu held,
// it returns without it.
func (e *entry) turn(asleep bool, act func() error) error {
	busy := make(chan struct{})
	e.busy = busy
	e.mu.Unlock()
	err := act()
	e.mu.Lock()
	if err == nil {
		e.asleep = asleep
		e.last = time.Now()
	}
	e.busy = nil
	close(busy)
	e.mu.Unlock()
	return err
}

// watchIdle hibernates the workload once no connection has been open for
// its idle period.
func (e *entry) watchIdle() {
	t := time.NewTicker(max(e.cfg.IdleAfter/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
			if err := e.sleep(e.a.ctx, true); err != nil && !errors.Is(err, ErrNotHeld) && e.a.ctx.Err() == nil {
				e.a.log.Error("activator: hibernate an idle workload", "workload", e.cfg.Name, "err", err)
			}
		}
	}
}

// begin counts c in; false once the entry is closed.
func (e *entry) begin(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	if e.conns == nil {
		e.conns = map[net.Conn]struct{}{}
	}
	e.conns[c] = struct{}{}
	e.active++
	e.last = time.Now()
	return true
}

func (e *entry) end(c net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.conns, c)
	e.active--
	e.last = time.Now()
}

// close lets go of the ports and ends the connections in flight.
func (e *entry) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.done)
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	for _, ln := range e.lns {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// proxy copies both ways until both have ended, passing half-closes on.
func proxy(c, b net.Conn) {
	defer c.Close()
	defer b.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(b, c) }()
	go func() { defer wg.Done(); pipe(c, b) }()
	wg.Wait()
}

func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		// One way broke: end both, as the peer would see it.
		dst.Close()
		src.Close()
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// reset closes c with a reset, not an orderly end: the client must not
// take it for an empty answer.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
