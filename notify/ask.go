package notify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotListening: nothing listens on the workload's socket; it takes no
// notifications.
var ErrNotListening = errors.New("the workload does not listen for notifications")

// Workload is where ckptd reaches one workload's socket.
type Workload struct {
	NetNS string // its network namespace (a pinned path); "": ckptd's own
	Name  string // the socket's abstract name, "@..."
}

// Prepare tells the workload a freeze comes, and returns the payload it
// answers with. It returns once the workload has closed its end, so that
// no connection to ckptd is in the tree when it is dumped. ctx bounds it.
func (w Workload) Prepare(ctx context.Context) ([]byte, error) {
	reply, err := w.say(ctx, Prepare, true)
	if err != nil {
		return nil, err
	}
	word, payload, _ := strings.Cut(reply, " ")
	if word != "ready" {
		return nil, fmt.Errorf("the workload answered prepare with %q, not ready", clip(reply))
	}
	if payload == "" {
		return nil, nil
	}
	return decode(payload)
}

// Sealed tells the workload that checkpoint id is durable.
func (w Workload) Sealed(ctx context.Context, id string) error {
	return w.expectOK(ctx, Sealed+" "+id)
}

// Restored tells a restored workload which checkpoint it came from, with
// what it answered prepare then.
func (w Workload) Restored(ctx context.Context, id string, payload []byte) error {
	line := Restored + " " + id
	if len(payload) > 0 {
		line += " " + encode(payload)
	}
	return w.expectOK(ctx, line)
}

func (w Workload) expectOK(ctx context.Context, line string) error {
	reply, err := w.say(ctx, line, false)
	if err == nil && reply != "ok" {
		err = fmt.Errorf("the workload answered %q, not ok", clip(reply))
	}
	return err
}

// say sends one line and reads the answer; with waitClose, also the
// workload's end of the connection.
func (w Workload) say(ctx context.Context, line string, waitClose bool) (string, error) {
	c, err := w.dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", w.silent(ctx, err)
	}
	r := bufio.NewReader(c)
	reply, err := readLine(r)
	if err != nil {
		return "", w.silent(ctx, err)
	}
	if waitClose {
		if _, err := r.ReadByte(); err == nil {
			return "", errors.New("the workload said more than one line")
		} else if !errors.Is(err, io.EOF) {
			return "", w.silent(ctx, err)
		}
	}
	return reply, nil
}

// silent names a deadline the workload let pass.
func (w Workload) silent(ctx context.Context, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
		return fmt.Errorf("the workload did not answer in time on %s: %w", w.Name, context.DeadlineExceeded)
	}
	return err
}

// dial connects to the socket inside the workload's namespace. A socket
// stays in the namespace it was made in, so only the making needs this
// thread there; the thread is retired after, never reused elsewhere.
func (w Workload) dial() (net.Conn, error) {
	if !strings.HasPrefix(w.Name, "@") || len(w.Name) < 2 {
		return nil, fmt.Errorf("notification socket %q: want an abstract name, @...", w.Name)
	}
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if w.NetNS != "" {
			ns, err := os.Open(w.NetNS)
			if err != nil {
				done <- result{err: err}
				return
			}
			err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
			ns.Close()
			if err != nil {
				done <- result{err: fmt.Errorf("enter the workload's network namespace: %w", err)}
				return
			}
		}
		c, err := net.Dial("unix", w.Name)
		if errors.Is(err, syscall.ECONNREFUSED) {
			err = ErrNotListening
		}
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
