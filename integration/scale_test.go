package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/test/nettest"
)

// TestScaleToZero: a python3 server with its state in memory, run with
// --idle-after, is hibernated once idle (its process gone, ckptd holding
// its port) and woken by the next connection, which it answers with the
// state it had, with no retry; so too after ckptd restarts. By hand,
// hibernate and wake do the same. A wake whose restore fails (a file the
// server needs is gone) resets the connection it held, says why in ps and
// keeps the checkpoint; the next connection, the file back, wakes it. A
// hibernated workload killed lets go of its port and network. The
// metrics count hibernations, wakes and failed wakes.
func TestScaleToZero(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	metrics := freeAddr(t)
	d := startDaemonWith(t, "--metrics-listen", metrics)
	wd := t.TempDir()
	d.mustIn(wd, "run", "--name", "count", "--net", "private", "-p", "18111:8000", "--idle-after", "1s", "--", "python3", "-c", counterServer)
	url := "http://127.0.0.1:18111/"
	waitFor(t, "count to answer", func() bool { return get(url) == "n=1" })
	pid := d.workload("count").Ref.PID

	waitFor(t, "count to hibernate when idle", func() bool { return d.workload("count").Hibernated })
	if !gone(pid) {
		t.Errorf("hibernated, yet its process %d still runs", pid)
	}
	if got := get(url); got != "n=2" {
		t.Errorf("the first connection after hibernation: %q, want n=2", got)
	}
	if w := d.workload("count"); !w.Running || w.Hibernated {
		t.Errorf("after its wake: %+v", w)
	}

	// By hand, and across a restart of ckptd.
	d.must("hibernate", "count")
	d.stop()
	d.start()
	if w := d.workload("count"); !w.Hibernated || w.Running {
		t.Fatalf("after hibernate and a restart: %+v", w)
	}
	if got := get(url); got != "n=3" {
		t.Errorf("after a restart of ckptd: %q, want n=3", got)
	}
	d.must("hibernate", "count")
	d.must("wake", "count")
	if got := get(url); got != "n=4" {
		t.Errorf("after wake by hand: %q, want n=4", got)
	}

	// A wake that fails: its working directory is gone.
	d.must("hibernate", "count")
	kept := len(d.checkpoints())
	moved := wd + ".away"
	if err := os.Rename(wd, moved); err != nil {
		t.Fatal(err)
	}
	if err := resetOnRequest("127.0.0.1:18111"); err != nil {
		t.Errorf("a failed wake: %v", err)
	}
	w := d.workload("count")
	if !w.Hibernated || !strings.Contains(w.WakeError, filepath.Base(wd)) {
		t.Errorf("after a failed wake: hibernated %v, wake error %q", w.Hibernated, w.WakeError)
	}
	if n := len(d.checkpoints()); n != kept {
		t.Errorf("%d checkpoints after a failed wake, had %d", n, kept)
	}
	if err := os.Rename(moved, wd); err != nil {
		t.Fatal(err)
	}
	if got := get(url); got != "n=5" {
		t.Errorf("the wake after the failed one: %q, want n=5", got)
	}

	d.must("run", "--name", "plain", "--", "sleep", "1000")
	d.mustFailAll(t, []failCase{
		{"needs --net private and a published port", []string{"run", "--name", "z1", "--idle-after", "1m", "--", "true"}},
		{"TCP ports only", []string{"run", "--name", "z2", "--net", "private", "-p", "18112:53/udp", "--idle-after", "1m", "--", "true"}},
		{"does not scale to zero", []string{"hibernate", "plain"}},
		{"not found", []string{"wake", "nope"}},
	})

	// Since the restart: two hibernations, three wakes, one failed.
	m := scrape(t, metrics)
	for _, line := range []string{"ckptd_hibernations_total 2", "ckptd_wakes_total 3", "ckptd_wake_seconds_count 3", `ckptd_failures_total{op="wake"} 1`} {
		if !strings.Contains(m, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}

	// Killed while it sleeps: its port and network go.
	d.must("hibernate", "count")
	d.must("kill", "count")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:18111", time.Second); err == nil {
		c.Close()
		t.Error("the port of a killed hibernated workload is still held")
	}
	d.must("kill", "plain")
	waitFor(t, "every network let go of", func() bool { return netnsLeft(d) == 0 })
}

// resetOnRequest sends an HTTP request to addr and wants the connection
// reset, not answered or closed in order.
func resetOnRequest(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return fmt.Errorf("got %q, %v; want a reset", line, err)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
