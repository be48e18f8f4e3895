package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestQuarantineAndReadmit: a checkpoint damaged on disk is quarantined by
// the scrub, stays visible with its reason, is refused for readmission
// while damaged, is readmitted once repaired and restores, and goes only
// by rm.
func TestQuarantineAndReadmit(t *testing.T) {
	d := startDaemonWith(t, "--scrub-interval", "1s")
	d.runLoad("qload", 16)
	c := d.create("qload", "--leave-running", "--name", "qckpt")
	corrupt(t, d, c.ID, 4096)
	waitScrubbed(t, d, c.ID)
	if out := d.must("ls", "--all"); !strings.Contains(out, "qckpt") || !strings.Contains(out, "QUARANTINED") {
		t.Errorf("ls --all does not show the quarantined checkpoint:\n%s", out)
	}
	if out := d.must("quarantine", "ls"); !strings.Contains(out, "qckpt") || !strings.Contains(out, "does not match its checksum") {
		t.Errorf("quarantine ls:\n%s", out)
	}
	d.mustFail("is damaged", "verify", "--readmit", "qckpt")
	d.mustFail("not found", "restore", "qckpt", "--name", "nope")
	if !logged(d, `msg="request failed" method=/ckptd.v1.Ckptd/Restore`, "uid=0", "code=NotFound") {
		t.Error("ckptd did not log the refused restore with its caller")
	}

	flipByte(t, filepath.Join(d.root, "quarantine", c.ID), 4096) // repaired
	if out := d.must("verify", "qckpt"); !strings.Contains(out, "still quarantined") {
		t.Errorf("verify of a repaired quarantined checkpoint: %s", out)
	}
	if out := d.must("verify", "--readmit", "qckpt"); !strings.Contains(out, "readmitted") {
		t.Errorf("verify --readmit: %s", out)
	}
	if cs := d.checkpoints(); len(cs) != 1 || cs[0].ID != c.ID {
		t.Fatalf("after readmission: %+v", cs)
	}
	d.must("restore", "qckpt", "--name", "qcopy")
	d.mustFail("not quarantined", "verify", "--readmit", "qckpt")

	corrupt(t, d, c.ID, 4096)
	waitScrubbed(t, d, c.ID)
	if out := d.must("rm", "qckpt"); !strings.Contains(out, c.ID) {
		t.Errorf("rm of a quarantined checkpoint: %s", out)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "quarantine")); len(left) != 0 {
		t.Errorf("quarantine after rm: %v", left)
	}
}

// TestLostIndexKeepsCheckpoints: with index.db gone, a start rebuilds the
// index from each checkpoint's record, lineage included, and the newest
// restores; a running workload stays listed (its record's own file).
func TestLostIndexKeepsCheckpoints(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("iload", 16)
	first := d.create("iload", "--leave-running")
	second := d.create("iload", "--leave-running")
	if second.Parent != first.ID {
		t.Fatalf("second checkpoint's parent %q, want %s", second.Parent, first.ID)
	}
	// The index also holds the records of running targets: each has its
	// own file too, so the workload stays known.
	w := d.workload("iload")
	d.stop()
	if err := os.Remove(filepath.Join(d.root, "index.db")); err != nil {
		t.Fatal(err)
	}
	d.start()
	cs := d.checkpoints()
	if len(cs) != 2 || cs[0].ID != first.ID || cs[1].ID != second.ID || cs[1].Parent != first.ID {
		t.Fatalf("rebuilt index: %+v", cs)
	}
	if !strings.Contains(d.log.String(), "readmitted unindexed checkpoint") {
		t.Error("the rebuild was not logged")
	}
	d.must("restore", second.Name, "--name", "icopy")
	if got := d.workload("iload"); !got.Running || got.Ref.PID != w.Ref.PID {
		t.Fatalf("the running workload after the index was lost: %+v, want pid %d running", got, w.Ref.PID)
	}
	d.must("kill", "iload")
	waitFor(t, "the workload to end", func() bool { return !alive(w.Ref.PID) })
}

// waitScrubbed waits for the scrub to move checkpoint id to quarantine.
func waitScrubbed(t *testing.T, d *daemon, id string) {
	t.Helper()
	listed := func() bool {
		for _, c := range d.checkpoints() {
			if c.ID == id {
				return true
			}
		}
		return false
	}
	waitFor(t, "the scrub's quarantine of "+id, func() bool {
		_, err := os.Stat(filepath.Join(d.root, "quarantine", id))
		return err == nil && !listed()
	})
	if !logged(d, "scrub found checkpoint damaged; moved to quarantine", id) {
		t.Errorf("the scrub did not log the quarantine of %s", id)
	}
}

// TestStopDuringStartKeepsCheckpoints sends SIGTERM while a starting ckptd
// verifies checkpoints its lost index no longer lists: it must stop
// without quarantining anything, and the next start lists every
// checkpoint.
func TestStopDuringStartKeepsCheckpoints(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("sload", 400)
	var ids []string
	for range 3 {
		ids = append(ids, d.create("sload", "--leave-running").ID)
	}
	d.must("kill", "sload") // the lost index forgets the workload too
	d.stop()
	if err := os.Remove(filepath.Join(d.root, "index.db")); err != nil {
		t.Fatal(err)
	}

	log := &lockedBuffer{}
	cmd := exec.Command(bins.ckptd, "--root", d.root, "--socket", d.socket, "--log-level", "debug", "--containerd", d.containerd)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "verifying unindexed checkpoints") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	out := log.String()
	if err == nil || !strings.Contains(out, "context canceled") {
		t.Fatalf("SIGTERM did not land during verification (exit %v):\n%s", err, out)
	}
	if strings.Contains(out, "quarantine") {
		t.Errorf("an interrupted start quarantined checkpoints:\n%s", out)
	}
	d.start()
	cs := d.checkpoints()
	if len(cs) != len(ids) {
		t.Fatalf("after an interrupted start: %d checkpoints, want %d", len(cs), len(ids))
	}
}

// lockedBuffer is a bytes.Buffer a running command writes while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logged reports whether one line of the daemon's log holds every part.
func logged(d *daemon, parts ...string) bool {
	for _, l := range strings.Split(d.log.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}
