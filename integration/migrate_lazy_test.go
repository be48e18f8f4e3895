package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMigrateLazy: post-copy. A workload rewriting part of its memory
// moves with --lazy: the copy on the destination holds exactly the memory
// its generation count says, the source is gone, fs.pipe-max-size is as
// it was, and neither side keeps images or a checkpoint. Then the link is
// cut while pages still move (shaped slow, then every packet dropped):
// the destination ends its copy, and only after that does the source
// resume, from the moment it froze; the migration fails in one line. Over
// the healed link the workload migrates. Last, either ckptd is killed
// while pages move: the source resumes, the destination's copy ends (at
// once, or by itself or when its killed ckptd starts again: its missing
// pages read as zeros), and fs.pipe-max-size is
// put back by the source's next start.
func TestMigrateLazy(t *testing.T) {
	a, b := twoHosts(t)
	idle := "--peer-timeout=" + partitionIdle.String()
	src, dst := a.ckptd("", "", idle), b.ckptd("", "", idle)
	// The host's default, which CRIU's lazy dump needs raised.
	const pipeMax = "1048576"
	orig := strings.TrimSpace(readFile(pipeMaxSysctl))
	t.Cleanup(func() { os.WriteFile(pipeMaxSysctl, []byte(orig), 0o644) })
	if err := os.WriteFile(pipeMaxSysctl, []byte(pipeMax), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := src.must("check"); !strings.Contains(out, "lazy-migration") || !strings.Contains(out, "a lazy dump raises it") {
		t.Errorf("check does not say how post-copy works here:\n%s", out)
	}
	src.runLoad("refused", 4)
	src.mustFail("excludes --keep-source", "migrate", "refused", "--to", b.addr(), "--lazy", "--keep-source")
	src.mustFail("excludes --keep-source and --precopy", "migrate", "refused", "--to", b.addr(), "--lazy", "--precopy")
	src.must("kill", "refused")

	const mib, churn = 64, 2
	w := src.runLoad("lz", mib, "--churn", strconv.Itoa(churn))
	stop := churning(t, w.Ref.PID, 20*time.Millisecond)
	r := src.migrate("lz", "--to", b.addr(), "--lazy")
	stop()
	t.Logf("post-copy: downtime %s ns, %s bytes", r.DowntimeNS, r.Bytes)
	if r.Checkpoint != "" || !r.SourceStopped {
		t.Errorf("result %+v: want no checkpoint kept and the source stopped", r)
	}
	if exists(w.Ref.PID) {
		t.Errorf("the source (pid %d) still runs", w.Ref.PID)
	}
	x := dst.workload("lz")
	if hash, gen := genStatus(t, x); hash != memloadHash(mib, churn, gen) {
		t.Fatalf("the copy's memory at generation %d is %s, want %s", gen, hash, memloadHash(mib, churn, gen))
	}
	if got := strings.TrimSpace(readFile(pipeMaxSysctl)); got != pipeMax {
		t.Errorf("fs.pipe-max-size is %s after the migration, was %s", got, pipeMax)
	}
	for _, d := range []*daemon{src, dst} {
		if l := leftovers(t, d); len(l) > 0 {
			t.Errorf("%s keeps %v", d.root, l)
		}
		if cs := d.checkpoints(); len(cs) > 0 {
			t.Errorf("%s keeps checkpoints %+v", d.root, cs)
		}
	}
	dst.must("kill", "lz")

	// Cut while pages move, and cut while the destination's answer is
	// on its way (its copy runs, and the source never hears of it).
	cutLazy(t, a, b, src, dst, "lz-cut", "")
	cutLazy(t, a, b, src, dst, "lz-cut-answer", migrateKindRestored)

	// Either ckptd killed while pages move: the source resumes, and the
	// destination's copy, whose missing pages would read as zeros, ends.
	for _, side := range []string{"source", "destination"} {
		unshape := shape(t, a, "16mbit")
		name := "lz-kill-" + side
		w := src.runLoad(name, 32)
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		wait := src.startCtl("migrate", name, "--to", b.addr(), "--lazy")
		copyPID := awaitCopy(t, dst, name)
		victim := map[string]*daemon{"source": src, "destination": dst}[side]
		victim.kill9()
		victim.start()
		waitFor(t, "the destination's copy to end", func() bool { return !exists(copyPID) })
		waitFor(t, "the source to resume", func() bool { return running(w.Ref.PID) })
		if side == "destination" {
			if _, err := wait(); err == nil {
				t.Error("migrate succeeded though the destination died")
			}
			// Its missing pages read as zeros: memload, a Go program, dies
			// of it within a second; a ckptd that starts again ends a copy
			// that still runs.
			for _, x := range dst.ps() {
				if x.Ref.Name == name && x.Running {
					t.Errorf("the destination lists its unfilled copy running: %+v", x)
				}
			}
		} else {
			wait() // its ckptd died under it
			if got := strings.TrimSpace(readFile(pipeMaxSysctl)); got != pipeMax {
				t.Errorf("fs.pipe-max-size is %s after a source ckptd was killed in a lazy dump and started again, was %s", got, pipeMax)
			}
		}
		untouched(t, w, before)
		unshape()
		src.must("kill", name)
	}
}

const migrateKindRestored = "restored"

// cutLazy partitions a post-copy migration of a 32 MiB workload over a
// link shaped slow (its pages take about 17 s): once the destination's
// copy runs, or, with pauseBefore, once the destination is about to send
// that message. The destination ends its copy and only after that does
// the source resume, from the moment it froze; the migration fails in one
// line. Over the healed link the workload migrates.
func cutLazy(t *testing.T, a, b *host, src, dst *daemon, name, pauseBefore string) {
	t.Helper()
	mark := filepath.Join(t.TempDir(), "paused")
	if pauseBefore != "" {
		dst.stop()
		dst.env = []string{"CKPTD_FAILPOINT_PAUSE_BEFORE=" + pauseBefore, "CKPTD_FAILPOINT_PAUSE_MARK=" + mark}
		dst.start()
		defer func() {
			dst.stop()
			dst.env = nil
			dst.start()
		}()
	}
	unshape := shape(t, a, "16mbit")
	defer unshape()
	w := src.runLoad(name, 32)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	wait := src.startCtl("migrate", name, "--to", b.addr(), "--lazy")
	if pauseBefore != "" {
		waitFor(t, "the destination to pause before "+pauseBefore, func() bool {
			_, err := os.Stat(mark)
			return err == nil
		})
	}
	copyPID := awaitCopy(t, dst, name)
	heal := partition(t, b)
	os.Remove(mark)
	cut := time.Now()
	waitFor(t, "the source to resume", func() bool { return running(w.Ref.PID) || !exists(w.Ref.PID) })
	if exists(copyPID) {
		t.Errorf("%s: the source resumed %s after the cut while the destination's copy (pid %d) still ran", name, time.Since(cut), copyPID)
	}
	stderr, err := wait()
	t.Logf("%s: cut during post-copy: the source resumed and migrate failed after %s: %s", name, time.Since(cut).Round(time.Millisecond), strings.TrimSpace(stderr))
	if err == nil {
		t.Fatalf("%s: migrate succeeded across the cut", name)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 2 || !strings.Contains(stderr, "post-copy") {
		t.Errorf("%s: want the post-copy warning and one error line, got:\n%s", name, stderr)
	}
	untouched(t, w, before)
	heal()
	unshape()
	settleDestination(t, dst, name, "post-copy")

	src.migrate(name, "--to", b.addr(), "--lazy")
	x := dst.workload(name)
	continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
	dst.must("kill", name)
}

// awaitCopy waits until the destination runs its copy of name, and
// returns its PID.
func awaitCopy(t *testing.T, dst *daemon, name string) int {
	t.Helper()
	var pid int
	waitFor(t, "the destination to run its copy", func() bool {
		for _, x := range dst.ps() {
			if x.Ref.Name == name && exists(x.Ref.PID) {
				pid = x.Ref.PID
			}
		}
		return pid != 0
	})
	return pid
}

// running tells whether pid lives with no thread stopped or traced.
func running(pid int) bool {
	s := threadStates(pid)
	return exists(pid) && !strings.Contains(s, "T (") && !strings.Contains(s, "t (")
}

const pipeMaxSysctl = "/proc/sys/fs/pipe-max-size"

// shape limits what h sends to rate with a token bucket on its end of the
// link; unshape (also run at cleanup) removes it.
func shape(t *testing.T, h *host, rate string) (unshape func()) {
	t.Helper()
	run(t, "ip", "netns", "exec", h.netns, "tc", "qdisc", "add", "dev", h.dev, "root", "tbf", "rate", rate, "burst", "32kb", "latency", "2s")
	done := false
	unshape = func() {
		if done {
			return
		}
		done = true
		if out, err := exec.Command("ip", "netns", "exec", h.netns, "tc", "qdisc", "del", "dev", h.dev, "root").CombinedOutput(); err != nil {
			t.Errorf("unshape %s: %v: %s", h.name, err, out)
		}
	}
	t.Cleanup(unshape)
	return unshape
}
