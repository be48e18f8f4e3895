package activator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// server is a workload in a test: a real echo server on loopback that
// Wake starts and Hibernate stops, counting both.
type server struct {
	t             *testing.T
	addr          string
	mu            sync.Mutex
	ln            net.Listener
	wakes, sleeps atomic.Int32
	failWake      atomic.Bool
	wakeDelay     time.Duration
}

func (s *server) Wake(ctx context.Context, name string) error {
	s.wakes.Add(1)
	time.Sleep(s.wakeDelay)
	if s.failWake.Load() {
		return errors.New("restore failed")
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("echo " + line))
			}()
		}
	}()
	return nil
}

func (s *server) Hibernate(ctx context.Context, name string) error {
	s.sleeps.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	return nil
}

func freePort(t *testing.T) (string, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String(), uint16(ln.Addr().(*net.TCPAddr).Port)
}

func ask(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

func start(t *testing.T, s *server, idle time.Duration) (*Activator, string) {
	t.Helper()
	s.addr, _ = freePort(t)
	_, host := freePort(t)
	a := New(slog.New(slog.DiscardHandler), s)
	t.Cleanup(func() { a.Close(); s.Hibernate(context.Background(), "") })
	if err := a.Hold(Config{Name: "w", Ports: []Port{{Host: host, Backend: s.addr}}, IdleAfter: idle, Asleep: true}); err != nil {
		t.Fatal(err)
	}
	return a, fmt.Sprintf("127.0.0.1:%d", host)
}

// TestWakeOnConnection: connections to a sleeping workload wake it once
// and are each answered by it; none needs a retry.
func TestWakeOnConnection(t *testing.T) {
	s := &server{t: t, wakeDelay: 100 * time.Millisecond}
	_, addr := start(t, s, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := ask(addr, fmt.Sprint(i))
			if err != nil || got != fmt.Sprintf("echo %d", i) {
				errs <- fmt.Errorf("connection %d: %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.wakes.Load(); n != 1 {
		t.Errorf("woken %d times, want once", n)
	}
}

// TestIdleHibernates: with no connection for its period the workload is
// put to sleep, and the next connection wakes it again.
func TestIdleHibernates(t *testing.T) {
	s := &server{t: t}
	_, addr := start(t, s, 100*time.Millisecond)
	if got, err := ask(addr, "a"); got != "echo a" {
		t.Fatalf("first: %q, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.sleeps.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.sleeps.Load() != 1 {
		t.Fatalf("not hibernated after its idle period")
	}
	if got, err := ask(addr, "b"); got != "echo b" || s.wakes.Load() != 2 {
		t.Fatalf("after hibernation: %q, %v; wakes %d", got, err, s.wakes.Load())
	}
}

// TestWakeFails: a wake that fails resets the connection it held; the
// workload stays asleep and the next connection tries again.
func TestWakeFails(t *testing.T) {
	s := &server{t: t}
	s.failWake.Store(true)
	_, addr := start(t, s, 0)
	_, err := ask(addr, "a")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a failed wake: %v, want a reset", err)
	}
	s.failWake.Store(false)
	if got, err := ask(addr, "b"); got != "echo b" || s.wakes.Load() != 2 {
		t.Errorf("the next connection: %q, %v; wakes %d", got, err, s.wakes.Load())
	}
}

// TestHibernateByHand waits for no connection, refuses while one is
// open, and Release lets go of the port.
func TestHibernateByHand(t *testing.T) {
	s := &server{t: t}
	a, addr := start(t, s, 0)
	if err := a.Switch(context.Background(), "w", false); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // accepted and counted
	if err := a.Switch(context.Background(), "w", true); err == nil || !strings.Contains(err.Error(), "open connection") {
		t.Errorf("hibernate with a connection open: %v", err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if err := a.Switch(context.Background(), "w", true); err != nil || s.sleeps.Load() != 1 {
		t.Errorf("hibernate: %v, sleeps %d", err, s.sleeps.Load())
	}
	if err := a.Switch(context.Background(), "nope", true); !errors.Is(err, ErrNotHeld) {
		t.Errorf("an unknown workload: %v", err)
	}
	a.Release("w")
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the port is still held after Release")
	}
}
