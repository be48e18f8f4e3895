package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKillDuringSeal kills ckptd (-9) after a --leave-running checkpoint
// released its target and before the checkpoint was sealed: the target
// runs on, and the next start seals the checkpoint, which a restore waits
// for and which then verifies and restores.
func TestKillDuringSeal(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("sealme", 512)
	id := killWhileSealing(t, d, w, "sealme")
	d.must("restore", id, "--name", "sealcopy") // waits for the seal
	if !logged(d, "sealing a checkpoint an interrupted ckptd left unsealed", id) {
		t.Error("the start did not log the resealed checkpoint")
	}
	for _, c := range d.checkpoints() {
		if c.ID == id && c.State != "sealed" {
			t.Errorf("checkpoint %s is %q after the restore", id, c.State)
		}
	}
	d.must("verify", id)
}

// killWhileSealing creates a --leave-running checkpoint of target (the
// workload w) and kills ckptd once the target is released and before the
// seal ends, retrying up to three times; the target must run on after
// each kill. It restarts ckptd and returns the checkpoint's id.
func killWhileSealing(t *testing.T, d *daemon, w target, name string) string {
	t.Helper()
	var id string
	for attempt := 1; id == ""; attempt++ {
		released := strings.Count(d.log.String(), "target released; sealing checkpoint")
		wait := d.startCtl("create", name, "--leave-running")
		waitFor(t, "target released", func() bool {
			return strings.Count(d.log.String(), "target released; sealing checkpoint") > released
		})
		d.cmd.Process.Signal(syscall.SIGSTOP)
		id = sealingOnDisk(t, d)
		d.kill9()
		wait()
		if id == "" {
			if attempt == 3 {
				t.Fatal("in 3 attempts the kill never landed before the seal ended")
			}
			t.Logf("attempt %d: the seal ended before the kill; again", attempt)
		}
		if st := threadStates(w.Ref.PID); st == "" || strings.Contains(st, "T (stopped)") {
			t.Fatalf("the target is not running after the kill: %q", st)
		}
		d.start()
	}
	return id
}

// sealingOnDisk returns the id of the checkpoint whose record says it is
// still sealing, if any.
func sealingOnDisk(t *testing.T, d *daemon) string {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(d.root, "checkpoints", "*", "checkpoint.json"))
	for _, r := range recs {
		var c checkpoint
		data, err := os.ReadFile(r)
		if err == nil && json.Unmarshal(data, &c) == nil && c.State == "sealing" {
			return c.ID
		}
	}
	return ""
}
