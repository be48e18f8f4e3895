package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMigrateCutAtEachMessage cuts a fenced migration's connection before
// each message of the protocol, on the side that sends it (a failpoint in
// the test build of ckptd closes the connection instead of sending). After
// each cut: never two running copies; either the source runs on, or the
// destination holds a copy (running, or stopped and in doubt); settled as
// an operator would, exactly one copy runs, with the memory the workload
// had.
func TestMigrateCutAtEachMessage(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	cases := []struct {
		side, kind string
	}{
		{"source", "offer"}, {"destination", "report"}, {"source", "file"},
		{"source", "commit"}, {"destination", "restored"}, {"source", "done"},
	}
	for i, cs := range cases {
		name := fmt.Sprintf("cut%d", i)
		cut := src
		if cs.side == "destination" {
			cut = dst
		}
		cut.stop()
		cut.env = []string{"CKPTD_FAILPOINT_CUT_BEFORE=" + cs.kind}
		cut.start()

		w := src.runLoadIn(t.TempDir(), name, 32)
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		_, stderr, err := src.ctl("migrate", name, "--to", b.addr())
		if err == nil && cs.kind != "done" {
			t.Errorf("cut before %s's %q: migrate succeeded", cs.side, cs.kind)
		}
		if cs.kind == "done" && !strings.Contains(stderr, "--resolve") {
			t.Errorf("cut before the source's last word: migrate does not tell how to settle the destination: %q", stderr)
		}
		// The destination settles on its own (it hears the cut when it
		// next reads): wait until one side holds the target.
		var srcRuns, copyRuns bool
		var copy target
		settled := func() bool {
			srcRuns = alive(w.Ref.PID) && !traced(w.Ref.PID) && !strings.Contains(threadStates(w.Ref.PID), "T (stopped)")
			copy = target{}
			for _, x := range dst.ps() {
				if x.Ref.Name == name && exists(x.Ref.PID) { // running or stopped
					copy = x
				}
			}
			copyRuns = copy.Ref.PID != 0 && !strings.Contains(threadStates(copy.Ref.PID), "T (stopped)")
			return srcRuns || copyRuns || copy.InDoubt != ""
		}
		for end := time.Now().Add(10 * time.Second); !settled() && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("cut before %s's %q: source runs %v, destination copy %d (runs %v, in doubt %q); migrate: %s",
			cs.side, cs.kind, srcRuns, copy.Ref.PID, copyRuns, copy.InDoubt, strings.TrimSpace(stderr))
		switch {
		case srcRuns && copyRuns:
			t.Errorf("cut before %s's %q: both copies run", cs.side, cs.kind)
		case !srcRuns && copy.Ref.PID == 0:
			t.Errorf("cut before %s's %q: no copy is left", cs.side, cs.kind)
		case !srcRuns && !copyRuns && copy.InDoubt == "":
			t.Errorf("cut before %s's %q: the destination's copy is stopped but not in doubt", cs.side, cs.kind)
		}
		// Settle as an operator would, having looked at the source.
		if copy.InDoubt != "" {
			if srcRuns {
				dst.must("migrate", "--resolve", name, "--discard")
				waitFor(t, "discarded copy gone", func() bool { return !exists(copy.Ref.PID) })
			} else {
				dst.must("migrate", "--resolve", name, "--resume")
				copyRuns = true
			}
		}
		switch {
		case srcRuns:
			continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
			src.must("kill", name)
		case copyRuns:
			x := dst.workload(name)
			continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
			dst.must("kill", name)
		}
		cut.stop()
		cut.env = nil
		cut.start()
	}
}

// exists reports whether pid is a process that has not ended (running or
// stopped; alive says running).
func exists(pid int) bool {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	return i > 0 && !strings.HasPrefix(s[i+1:], " Z")
}
