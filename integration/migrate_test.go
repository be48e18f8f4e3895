package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type migrateResult struct {
	Destination   string `json:"destination"`
	Name          string `json:"name"`
	PID           int    `json:"pid"`
	Checkpoint    string `json:"checkpoint"`
	DowntimeNS    string `json:"downtime_ns"` // int64 in protojson is a string
	Bytes         string `json:"bytes"`
	SourceStopped bool   `json:"source_stopped"`
	Rounds        []struct {
		N      int    `json:"n"`
		Bytes  string `json:"bytes"`
		Frozen bool   `json:"frozen"`
	} `json:"rounds"`
}

func (d *daemon) migrate(args ...string) migrateResult {
	d.t.Helper()
	var r migrateResult
	out := d.must(append([]string{"migrate", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		d.t.Fatalf("migrate output %q: %v", out, err)
	}
	return r
}

// leftovers lists what a daemon's state root holds in its scratch places:
// after a migration, finished or failed, there must be nothing but logs.
func leftovers(t *testing.T, d *daemon) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"staging/*", "dumps/*/images", "dumps/*/*.img", "dumps/*/rounds", "restores/*/*.img"} {
		m, _ := filepath.Glob(filepath.Join(d.root, pattern))
		out = append(out, m...)
	}
	return out
}

// TestMigrateWorkload moves a 256 MiB workload from host a to host b: its
// counter goes on and its memory hash is the same; the lineage on b says
// where it came from. Then a copy goes back to a with --keep-source.
func TestMigrateWorkload(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	w := src.runLoad("mover", 256)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	r := src.migrate("mover", "--to", b.addr())
	if !strings.HasPrefix(r.Destination, "b (") || r.Name != "mover" || !r.SourceStopped || r.DowntimeNS == "" || r.DowntimeNS == "0" {
		t.Fatalf("migrate result %+v", r)
	}
	waitFor(t, "source copy gone", func() bool { return !alive(w.Ref.PID) })
	if src.workload("mover").Running {
		t.Error("source still lists the workload as running")
	}
	moved := dst.workload("mover")
	if !moved.Running || moved.Ref.PID != r.PID {
		t.Fatalf("destination ps: %+v, result pid %d", moved, r.PID)
	}
	after := loadStatus(t, moved.Ref.PID, moved.Ref.LogPath)
	continues(t, before, after)
	if after.Counter == before.Counter {
		t.Error("counter did not move on after the migration")
	}

	var cs []struct {
		ID        string `json:"id"`
		Host      string `json:"host"`
		Migration struct {
			Peer string `json:"peer"`
		} `json:"migration"`
	}
	// The destination publishes the checkpoint once the target runs there.
	waitFor(t, "the received checkpoint listed", func() bool {
		if err := json.Unmarshal([]byte(dst.must("ls", "-o", "json")), &cs); err != nil {
			t.Fatal(err)
		}
		return len(cs) > 0
	})
	if len(cs) != 1 || cs[0].ID != r.Checkpoint || moved.RestoredFrom != cs[0].ID || !strings.HasPrefix(cs[0].Migration.Peer, "a (") {
		t.Fatalf("destination lineage: checkpoints %+v, restored from %q, result %+v", cs, moved.RestoredFrom, r)
	}
	if insp := dst.must("inspect", cs[0].ID); !strings.Contains(insp, "Migrated:") {
		t.Errorf("inspect does not say where the checkpoint came from:\n%s", insp)
	}
	if len(src.checkpoints()) != 0 {
		t.Error("the source keeps a checkpoint of what it sent")
	}

	// A copy back to a, under a new name, leaving b's running.
	back := dst.migrate("mover", "--to", a.addr(), "--name", "mover-copy", "--keep-source")
	if back.SourceStopped {
		t.Error("--keep-source stopped the source")
	}
	cp := src.workload("mover-copy")
	if !cp.Running || !dst.workload("mover").Running {
		t.Fatalf("after --keep-source: copy %+v, original running %v", cp, dst.workload("mover").Running)
	}
	continues(t, after, loadStatus(t, cp.Ref.PID, cp.Ref.LogPath))
	waitFor(t, "the copy's checkpoint listed on a", func() bool { return len(src.checkpoints()) == 1 })
	for _, d := range []*daemon{src, dst} {
		if l := leftovers(t, d); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
}

// TestMigrateDestinationKilled kills the destination ckptd while pages
// stream to it: the source must resume, unchanged, and the restarted
// destination must hold nothing of it.
func TestMigrateDestinationKilled(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	w := src.runLoad("victim", 512)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	done := make(chan error, 1)
	var errOut string
	go func() {
		var err error
		_, errOut, err = src.ctl("migrate", "victim", "--to", b.addr(), "--precopy=off")
		done <- err
	}()
	killed := false
	deadline := time.Now().Add(30 * time.Second)
	for !killed && time.Now().Before(deadline) {
		pages, _ := filepath.Glob(filepath.Join(dst.root, "staging", "*", "pages-*.img"))
		for _, p := range pages {
			if st, err := os.Stat(p); err == nil && st.Size() > 16<<20 {
				dst.kill9()
				killed = true
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !killed {
		t.Fatal("never saw pages arrive at the destination")
	}
	if err := <-done; err == nil {
		t.Fatal("migrate succeeded although the destination was killed mid-transfer")
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "migrate victim") {
		t.Errorf("want one error line about the migration, got %q", errOut)
	}
	t.Logf("error: %s", strings.TrimSpace(errOut))
	if !alive(w.Ref.PID) {
		t.Fatal("source workload is not running after the failed migration")
	}
	continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
	if len(src.checkpoints()) != 0 {
		t.Error("the source lists a checkpoint")
	}
	if l := leftovers(t, src); len(l) > 0 {
		t.Errorf("source left behind: %v", l)
	}
	criuLogKept(t, errOut)

	dst.start()
	if len(dst.checkpoints()) != 0 || len(dst.ps()) != 0 {
		t.Errorf("restarted destination has checkpoints %v or targets %v", dst.checkpoints(), dst.ps())
	}
	if l := leftovers(t, dst); len(l) > 0 {
		t.Errorf("restarted destination left behind: %v", l)
	}
}

// TestMigrateBothWays runs a->b and b->a at once, while a local checkpoint
// runs on a: no lock held by a frozen source may stall the other host's
// work or its own (they once deadlocked until both timed out).
func TestMigrateBothWays(t *testing.T) {
	a, b := twoHosts(t)
	da, db := a.ckptd("", ""), b.ckptd("", "")
	// Own working directories: both ckptds share this machine, and dumps of
	// trees working in one directory must not run at once (CRIU's
	// proc.crtools), which two daemons cannot arrange between themselves.
	da.runLoadIn(t.TempDir(), "east", 256)
	db.runLoadIn(t.TempDir(), "west", 256)
	da.runLoadIn(t.TempDir(), "local", 16)
	toB := da.startCtl("migrate", "east", "--to", b.addr())
	toA := db.startCtl("migrate", "west", "--to", a.addr())
	waitFor(t, "a frozen, waiting for b", func() bool { return strings.Contains(db.log.String(), "incoming migration") })
	da.create("local", "--leave-running")
	for _, wait := range []func() (string, error){toB, toA} {
		if out, err := wait(); err != nil {
			t.Errorf("migrate: %v %s", err, out)
		}
	}
	for _, x := range []struct {
		d    *daemon
		name string
	}{{db, "east"}, {da, "west"}} {
		found := false
		for _, tg := range x.d.ps() {
			found = found || tg.Ref.Name == x.name && tg.Running
		}
		if !found {
			t.Errorf("%s is not running where it migrated", x.name)
		}
	}
}
