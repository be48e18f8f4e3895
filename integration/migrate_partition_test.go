package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// partitionIdle is the peer_timeout of the partition tests' ckptds.
const partitionIdle = 3 * time.Second

// TestMigratePartition: the link is cut silently (every packet of the
// destination dropped by nft, as a partition does, no RST or FIN) at each
// phase of a migration: before the offer, in a pre-copy's first round,
// inside the freeze before the images, before the commit, and on the
// destination before it says the copy runs. Each time the migration fails within peer_timeout plus a few
// seconds, the workload ends up running exactly once (the source resumed;
// a fenced copy restored meanwhile stays stopped, in doubt, until settled),
// and the destination keeps nothing else. A destination whose peer went
// quiet holds the name only until peer_timeout: a local run of that name
// goes through. Over the healed link a migration works.
func TestMigratePartition(t *testing.T) {
	a, b := twoHosts(t)
	idle := "--peer-timeout=" + partitionIdle.String()
	src, dst := a.ckptd("", "", idle), b.ckptd("", "", idle)
	mark := filepath.Join(t.TempDir(), "paused")
	for i, cs := range []struct {
		side, kind, phase string
		args              []string
	}{
		{"source", "offer", "pre-flight", nil},
		{"source", "round", "first pre-copy round", []string{"--precopy"}},
		{"source", "file", "frozen transfer", nil},
		{"source", "commit", "commit", nil},
		{"destination", "restored", "restore", nil},
	} {
		name := []string{"p-offer", "p-round", "p-file", "p-commit", "p-restored"}[i]
		side := src
		if cs.side == "destination" {
			side = dst
		}
		side.stop()
		side.env = []string{"CKPTD_FAILPOINT_PAUSE_BEFORE=" + cs.kind, "CKPTD_FAILPOINT_PAUSE_MARK=" + mark}
		side.start()

		w := src.runLoadIn(t.TempDir(), name, 32)
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		wait := src.startCtl(append([]string{"migrate", name, "--to", b.addr()}, cs.args...)...)
		waitFor(t, "pause before "+cs.kind, func() bool { _, err := os.Stat(mark); return err == nil })
		heal := partition(t, b)
		cut := time.Now()
		os.Remove(mark)
		stderr, err := wait()
		took := time.Since(cut)
		t.Logf("partition at the %s: migrate failed after %s: %s", cs.phase, took.Round(time.Millisecond), strings.TrimSpace(stderr))
		if err == nil {
			t.Fatalf("partition at the %s: migrate succeeded", cs.phase)
		}
		if took > partitionIdle+5*time.Second {
			t.Errorf("partition at the %s: migrate took %s to give up, peer_timeout is %s", cs.phase, took, partitionIdle)
		}
		untouched(t, w, before)
		if cs.kind == "file" {
			// The destination heard its source go quiet: the name is free
			// for local work within peer_timeout.
			start := time.Now()
			dst.runLoadIn(t.TempDir(), name, 4)
			if d := time.Since(start); d > partitionIdle+5*time.Second {
				t.Errorf("a local run of %s waited %s for the quiet migration", name, d)
			}
			dst.must("kill", name)
		}
		heal()
		settleDestination(t, dst, name, cs.phase)
		src.must("kill", name)
		side.stop()
		side.env = nil
		side.start()
	}

	w := src.runLoad("healed", 32)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	src.must("migrate", "healed", "--to", b.addr())
	x := dst.workload("healed")
	continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
	dst.must("kill", "healed")
}

// settleDestination waits until the destination of a partitioned
// migration keeps nothing of it but, at most, a copy stopped in doubt,
// which it then discards as an operator who saw the source run would.
func settleDestination(t *testing.T, dst *daemon, name, phase string) {
	t.Helper()
	var copy target
	waitFor(t, "the destination to settle", func() bool {
		copy = target{}
		for _, x := range dst.ps() {
			if x.Ref.Name == name && exists(x.Ref.PID) {
				copy = x
			}
		}
		return len(leftovers(t, dst)) == 0 && (copy.Ref.PID == 0 || copy.InDoubt != "")
	})
	if copy.Ref.PID != 0 {
		// Its checkpoint stays, as --resolve documents.
		if !strings.Contains(threadStates(copy.Ref.PID), "T (stopped)") {
			t.Errorf("partition at the %s: the destination's copy runs beside the source's", phase)
		}
		dst.must("migrate", "--resolve", name, "--discard")
		waitFor(t, "discarded copy gone", func() bool { return !exists(copy.Ref.PID) })
		return
	}
	for _, c := range dst.checkpoints() {
		if c.Target.Name == name {
			t.Errorf("partition at the %s: the destination keeps checkpoint %s", phase, c.Name)
		}
	}
}

// partition drops every packet in and out of h's network namespace but
// its loopback's, as a cut link does (no RST, no FIN); heal (also run at
// cleanup) removes the rule.
func partition(t *testing.T, h *host) (heal func()) {
	t.Helper()
	const table = "ckptd_it_partition"
	rules := "table inet " + table + " {\n" +
		" chain in { type filter hook input priority -200; policy drop; iifname \"lo\" accept; }\n" +
		" chain out { type filter hook output priority -200; policy drop; oifname \"lo\" accept; }\n}\n"
	cmd := exec.Command("ip", "netns", "exec", h.netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft partition of %s: %v: %s", h.name, err, out)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		if out, err := exec.Command("ip", "netns", "exec", h.netns, "nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("nft heal of %s: %v: %s", h.name, err, out)
		}
	}
	t.Cleanup(heal)
	return heal
}
