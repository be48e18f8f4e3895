package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// churn has the memload workload w rewrite its next 5 % of memory and
// waits until it has.
func churn(t *testing.T, w target, gen int) {
	t.Helper()
	if err := syscall.Kill(w.Ref.PID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("churned gen=%d", gen)
	waitFor(t, line, func() bool { return strings.Contains(readFile(w.Ref.LogPath), line) })
}

// restoredHash restores checkpoint name as a copy and returns its memory
// hash; the copy is removed after.
func restoredHash(t *testing.T, d *daemon, name, copyName string) string {
	t.Helper()
	d.must("restore", name, "--name", copyName)
	w := d.workload(copyName)
	h := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.must("kill", copyName)
	return h
}

// TestIncrementalChain: successive checkpoints of a job store only the
// pages that changed, restore through their chain with the memory they
// had, find a damaged parent page (naming the parent), fold a removed
// middle checkpoint into its child, and export whole.
func TestIncrementalChain(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("inc", 64)
	var cs []checkpoint
	var hashes []string
	for gen := 0; gen < 4; gen++ {
		if gen > 0 {
			churn(t, w, gen)
		}
		hashes = append(hashes, loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash)
		cs = append(cs, d.create("inc", "--leave-running"))
	}
	full := cs[0].Size
	if cs[0].Incremental != nil || full < 64<<20 {
		t.Fatalf("the first checkpoint is not whole: %d bytes, %+v", full, cs[0].Incremental)
	}
	for i, c := range cs[1:] {
		if c.Incremental == nil || c.Incremental.Parent != cs[i].ID {
			t.Fatalf("checkpoint %d is not incremental over %s: %+v", i+2, cs[i].ID, c.Incremental)
		}
		// 5 % of 64 MiB changed, plus the Go runtime's own pages.
		if c.Size > full/5 || c.Size+c.Incremental.SharedBytes < 64<<20 {
			t.Errorf("checkpoint %d stores %d bytes and shares %d; the whole one %d", i+2, c.Size, c.Incremental.SharedBytes, full)
		}
	}
	t.Logf("sizes: whole %d, then %d, %d, %d", full, cs[1].Size, cs[2].Size, cs[3].Size)
	if out := d.must("inspect", cs[3].Name); !strings.Contains(out, "read from parent") || !strings.Contains(out, "chain of 3") {
		t.Errorf("inspect does not describe the chain:\n%s", out)
	}
	for i := range cs {
		if h := restoredHash(t, d, cs[i].Name, fmt.Sprintf("inc-copy%d", i)); h != hashes[i] {
			t.Errorf("restore of checkpoint %d: memory hash %s, want %s", i+1, h, hashes[i])
		}
	}

	// A damaged page of the whole checkpoint is found by a restore of the
	// newest, and the error names the parent; repaired, it restores.
	corrupt(t, d, cs[0].ID, 8192)
	out := d.mustFail(cs[0].Name, "restore", cs[3].Name, "--name", "inc-bad")
	if !strings.Contains(out, "reads pages from") {
		t.Errorf("the error does not say the chain is at fault: %s", out)
	}
	corrupt(t, d, cs[0].ID, 8192)

	// Exported whole: the archive imports and restores alone.
	archive := filepath.Join(t.TempDir(), "inc.tar.zst")
	d.must("export", cs[3].Name, archive)
	d.must("import", archive, "--name", "inc-imported")
	if h := restoredHash(t, d, "inc-imported", "inc-copyi"); h != hashes[3] {
		t.Errorf("restore of the exported checkpoint: %s, want %s", h, hashes[3])
	}
	d.must("rm", "inc-imported")

	// A missing parent page file: restore refuses before CRIU runs.
	pages, _ := filepath.Glob(filepath.Join(d.root, "checkpoints", cs[1].ID, "pages-*.img"))
	if len(pages) != 1 {
		t.Fatalf("checkpoint 2 has page files %v", pages)
	}
	if err := os.Rename(pages[0], pages[0]+".away"); err != nil {
		t.Fatal(err)
	}
	d.mustFail("is missing", "restore", cs[3].Name, "--name", "inc-bad")
	if err := os.Rename(pages[0]+".away", pages[0]); err != nil {
		t.Fatal(err)
	}

	// Removing the middle of the chain: refused without --relink; with
	// it, the newest takes the pages it read from them and still
	// restores, as does the first.
	d.mustFail("--relink", "rm", cs[1].Name)
	d.mustFail("choose one", "rm", "-r", "--relink", cs[1].Name)
	d.must("rm", "--relink", cs[1].Name, cs[2].Name)
	last := d.checkpoint(cs[3].ID)
	if last.Parent != cs[0].ID || last.Incremental == nil || last.Incremental.Parent != cs[0].ID {
		t.Errorf("after the fold the newest reads from %+v (parent %s), want %s", last.Incremental, last.Parent, cs[0].ID)
	}
	d.must("verify", cs[3].Name)
	for _, i := range []int{0, 3} {
		if h := restoredHash(t, d, cs[i].Name, fmt.Sprintf("inc-fold%d", i)); h != hashes[i] {
			t.Errorf("after the fold, restore of checkpoint %d: %s, want %s", i+1, h, hashes[i])
		}
	}
	d.must("kill", "inc")
}

// TestKillDuringIncremental: ckptd killed while it deduplicates a new
// checkpoint against its parent, then while it folds that parent into it
// on rm --relink. After each restart every listed checkpoint verifies and
// restores with the memory it had.
func TestKillDuringIncremental(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("inckill", 256)
	h1 := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	c1 := d.create("inckill", "--leave-running")
	churn(t, w, 1)
	h2 := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	id := killWhileSealing(t, d, w, "inckill", true, nil)
	hashes := map[string]string{c1.ID: h1, id: h2}
	checkAll := func(when string) {
		t.Helper()
		for _, c := range d.checkpoints() {
			d.must("verify", c.Name)
			if h := restoredHash(t, d, c.Name, "inckill-copy"); h != hashes[c.ID] {
				t.Errorf("%s: %s restored with memory %s, want %s", when, c.Name, h, hashes[c.ID])
			}
		}
	}
	checkAll("after a kill during the incremental seal")
	if c := d.checkpoint(id); c.Incremental == nil || c.Incremental.Parent != c1.ID {
		t.Errorf("the resealed checkpoint is not incremental over %s: %+v", c1.ID, c.Incremental)
	}

	wait := d.startCtl("rm", "--relink", c1.Name)
	staging := filepath.Join(d.root, "staging")
	waitFor(t, "a fold in staging", func() bool {
		es, _ := os.ReadDir(staging)
		return len(es) > 0
	})
	d.cmd.Process.Signal(syscall.SIGSTOP)
	d.kill9()
	wait()
	d.start()
	checkAll("after a kill during a fold")
	if _, stderr, err := d.ctl("rm", "--relink", c1.Name); err != nil && !strings.Contains(stderr, "not found") {
		t.Errorf("rm --relink after the restart: %s", stderr)
	}
	checkAll("after the fold")
	d.must("kill", "inckill")
}
