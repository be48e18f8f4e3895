package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h Handler) Workload {
	t.Helper()
	name := fmt.Sprintf("@ckptd-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Setenv(Env, name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	w := Workload{Name: name}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := w.dial(); err == nil {
			c.Close()
			return w
		} else if time.Now().After(end) {
			t.Fatal(err)
		}
	}
}

// TestMessages: each message reaches the handler, prepare's payload
// comes back, and restored carries it to the workload.
func TestMessages(t *testing.T) {
	got := make(chan string, 3)
	w := serve(t, Handler{
		Prepare:  func() ([]byte, error) { return []byte("offset=42"), nil },
		Sealed:   func(id string) { got <- "sealed " + id },
		Restored: func(id string, p []byte) { got <- "restored " + id + " " + string(p) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := w.Prepare(ctx)
	if err != nil || string(p) != "offset=42" {
		t.Fatalf("prepare: %q, %v", p, err)
	}
	if err := w.Sealed(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if err := w.Restored(ctx, "abc", p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sealed abc", "restored abc offset=42"} {
		if g := <-got; g != want {
			t.Errorf("handler saw %q, want %q", g, want)
		}
	}
}

// TestRefusals: no listener, a handler that fails, a payload too large,
// a workload that never answers, and one that answers nonsense.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	if _, err := (Workload{Name: "@ckptd-notify-nobody"}).Prepare(ctx); !errors.Is(err, ErrNotListening) {
		t.Errorf("nobody listening: %v", err)
	}
	if _, err := (Workload{Name: "not-abstract"}).Prepare(ctx); err == nil || !strings.Contains(err.Error(), "abstract") {
		t.Errorf("a path: %v", err)
	}
	w := serve(t, Handler{Prepare: func() ([]byte, error) { return nil, errors.New("busy") }})
	if _, err := w.Prepare(ctx); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("a failing prepare: %v", err)
	}
	w = serve(t, Handler{Prepare: func() ([]byte, error) { return bytes.Repeat([]byte("x"), MaxPayload+1), nil }})
	if _, err := w.Prepare(ctx); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a payload too large: %v", err)
	}
	for _, reply := range []string{"", "ready !!notbase64", "nonsense"} {
		name := fmt.Sprintf("@ckptd-notify-raw-%d-%d", os.Getpid(), time.Now().UnixNano())
		ln, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			if reply != "" {
				c.Write([]byte(reply + "\n"))
			}
			time.Sleep(time.Second) // holds the connection open
		}()
		tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err = Workload{Name: name}.Prepare(tctx)
		cancel()
		ln.Close()
		if err == nil {
			t.Errorf("reply %q: accepted", reply)
		}
	}
}
