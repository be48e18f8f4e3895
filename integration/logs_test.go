package integration

import (
	"strings"
	"testing"
	"time"
)

// TestLogs: a log past gRPC's 4 MiB message limit streams whole; --tail
// gives the last lines; --follow prints output as it comes and returns
// when the workload ends.
func TestLogs(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "--name", "big", "--", "sh", "-c", `head -c 6000000 /dev/zero | tr '\0' x; echo; echo second-last; echo last; exec sleep 600`)
	waitFor(t, "big output written", func() bool { return strings.Contains(d.must("logs", "--tail", "1", "big"), "last") })
	if out := d.must("logs", "big"); len(out) < 6000000 || !strings.HasSuffix(out, "second-last\nlast\n") {
		t.Errorf("logs of a 6 MB log: %d bytes, ends %q", len(out), out[max(0, len(out)-30):])
	}
	if out := d.must("logs", "--tail", "2", "big"); out != "second-last\nlast\n" {
		t.Errorf("--tail 2: %q", out)
	}
	d.must("kill", "big")

	d.must("run", "--name", "ticker", "--", "sh", "-c", `for i in 1 2 3 4 5; do echo tick$i; sleep 0.4; done`)
	start := time.Now()
	out := d.must("logs", "--follow", "ticker")
	if !strings.HasPrefix(out, "tick1\n") || !strings.HasSuffix(out, "tick5\n") {
		t.Errorf("--follow printed %q", out)
	}
	if time.Since(start) < time.Second {
		t.Errorf("--follow returned after %s, before the workload ended", time.Since(start))
	}
}

// TestRunExitsAtOnce: a program that ends at once (a port in use, a bad
// argument) is reported with its exit and its last output, not as running.
func TestRunExitsAtOnce(t *testing.T) {
	d := startDaemon(t)
	d.mustFail("ended at once (exited 3): starting; listen :80: address already in use", "run", "--name", "bad", "--",
		"sh", "-c", "echo starting; echo 'listen :80: address already in use' >&2; exit 3")
	if out := d.must("logs", "bad"); !strings.Contains(out, "address already in use") {
		t.Errorf("logs of the failed workload: %q", out)
	}
}
