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
	id := killWhileSealing(t, d, w, "sealme", true, nil)
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

// killWhileSealing creates a checkpoint of target (the workload w), with
// --leave-running if leave, and kills ckptd once the target is released
// and before the seal ends, retrying up to three times (a target that
// stops is run again for each); a target left running must run on after
// each kill. It calls beforeStart, if set, with the checkpoint's id,
// restarts ckptd and returns the id.
func killWhileSealing(t *testing.T, d *daemon, w target, name string, leave bool, beforeStart func(id string)) string {
	t.Helper()
	var id string
	args := []string{"create", name}
	if leave {
		args = append(args, "--leave-running")
	}
	for attempt := 1; id == ""; attempt++ {
		if !leave && attempt > 1 {
			d.must("rm", "--all")
			w = d.runLoad(name, 512)
		}
		released := strings.Count(d.log.String(), "target released; sealing checkpoint")
		wait := d.startCtl(args...)
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
		if st := threadStates(w.Ref.PID); leave && (st == "" || strings.Contains(st, "T (stopped)")) {
			t.Fatalf("the target is not running after the kill: %q", st)
		}
		if id != "" && beforeStart != nil {
			beforeStart(id)
		}
		d.start()
	}
	return id
}

// TestKillDuringSealAfterStop: a checkpoint whose target stops is made
// durable in the freeze (every file fsynced, its record and the index
// written) and hashed once the target is gone. ckptd killed -9 before the
// hash ends, and then a reboot: the next start seals the checkpoint rather than
// quarantine it, and it restores the workload with its memory. The
// reboot is a test-only boot id (CKPTD_FAILPOINT_BOOT_ID).
func TestKillDuringSealAfterStop(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("stopseal", 512)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	id := killWhileSealing(t, d, w, "stopseal", false, func(id string) {
		data, err := os.ReadFile(filepath.Join(d.root, "checkpoints", id, "checkpoint.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `"synced": true`) {
			t.Errorf("the record of a stopped target's checkpoint does not say it was synced: %s", data)
		}
		d.env = []string{"CKPTD_FAILPOINT_BOOT_ID=00000000-0000-0000-0000-00000000b007"}
	})
	d.must("restore", id) // waits for the seal
	if !logged(d, "sealing a checkpoint an interrupted ckptd left unsealed", id) {
		t.Error("the start did not log the resealed checkpoint")
	}
	d.must("verify", id)
	x := d.workload("stopseal")
	continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
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
