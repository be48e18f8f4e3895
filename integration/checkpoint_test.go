package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCreateThenRestoreContinues(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("job", 64)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	c := d.create("job")
	if c.Stats.FrozenTime <= 0 {
		t.Errorf("checkpoint has no frozen_time: %+v", c)
	}
	waitFor(t, "checkpointed target to end", func() bool { return !alive(w.Ref.PID) })
	if d.workload("job").Running {
		t.Fatal("ps says job runs after a checkpoint without --leave-running")
	}

	d.must("restore", c.Name)
	r := d.workload("job")
	if !r.Running || r.RestoredFrom != c.ID {
		t.Fatalf("restored job: %+v", r)
	}
	after := loadStatus(t, r.Ref.PID, r.Ref.LogPath)
	continues(t, before, after)
	time.Sleep(100 * time.Millisecond)
	continues(t, after, loadStatus(t, r.Ref.PID, r.Ref.LogPath))
}

func TestLeaveRunning(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("svc", 16)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	d.create("svc", "--leave-running")
	if !alive(w.Ref.PID) {
		t.Fatal("target stopped despite --leave-running")
	}
	continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
}

// TestLeaveRunningPublishesAfterRelease: a --leave-running checkpoint
// appears in the store only once its target runs again; nothing of
// ckptd's (record, rename, index commit) happens inside the freeze. The
// test watches the checkpoints directory with inotify and looks at the
// target's threads when the checkpoint is renamed into it: inside the
// freeze CRIU holds them in tracing stop.
func TestLeaveRunningPublishesAfterRelease(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("snap", 64)
	dir := filepath.Join(d.root, "checkpoints")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	states := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		if _, err := unix.Read(fd, buf); err != nil {
			states <- "inotify: " + err.Error()
			return
		}
		states <- threadStates(w.Ref.PID)
	}()
	d.create("snap", "--leave-running")
	select {
	case s := <-states:
		if strings.Contains(s, "t (tracing stop)") || strings.Contains(s, "inotify") {
			t.Fatalf("the checkpoint was published while its target was frozen: %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint appeared in the store")
	}
}

func TestCopiesRunSideBySide(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("orig", 32)
	snap := d.create("orig", "--leave-running", "--name", "snap")
	d.must("restore", "snap", "--name", "copy1")
	d.must("restore", "snap", "--name", "copy2")

	want := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	for _, name := range []string{"copy1", "copy2"} {
		c := d.workload(name)
		if !c.Running || c.RestoredFrom != snap.ID {
			t.Fatalf("%s: %+v", name, c)
		}
		if c.Ref.LogPath == w.Ref.LogPath {
			t.Errorf("%s writes to the original's log", name)
		}
		if got := loadStatus(t, c.Ref.PID, c.Ref.LogPath); got.Hash != want.Hash {
			t.Errorf("%s memory hash %s, original %s", name, got.Hash, want.Hash)
		}
	}
	if !alive(w.Ref.PID) {
		t.Fatal("original died when copies were restored")
	}
	// A checkpoint of a copy descends from the checkpoint it came from.
	cc := d.create("copy1", "--leave-running")
	if cc.Parent != snap.ID {
		t.Errorf("checkpoint of copy1 has parent %q, want %s", cc.Parent, snap.ID)
	}
	tree := d.must("ls", "--tree")
	for _, s := range []string{"snap", "restored as copy1", "restored as copy2", cc.Name} {
		if !strings.Contains(tree, s) {
			t.Errorf("ls --tree lacks %q:\n%s", s, tree)
		}
	}
	d.mustFail("descendants", "rm", "snap")
	out := d.must("rm", "--recursive", "snap")
	if !strings.Contains(out, snap.Name) || !strings.Contains(out, cc.Name) {
		t.Errorf("rm --recursive removed %q, want %s and %s", out, snap.Name, cc.Name)
	}
	if n := len(d.checkpoints()); n != 0 {
		t.Errorf("%d checkpoints left after rm --recursive", n)
	}
	if _, err := os.Stat(filepath.Join(d.root, "checkpoints", snap.ID)); !os.IsNotExist(err) {
		t.Errorf("checkpoint directory still there: %v", err)
	}
}

func TestInspect(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("insp", 16)
	c := d.create("insp", "--leave-running")
	out := d.must("inspect", c.Name)
	for _, s := range []string{"frozen_time", "memload", "--mib 16", "output.log", "UNIXSK", "PIPE"} {
		if !strings.Contains(out, s) {
			t.Errorf("inspect lacks %q:\n%s", s, out)
		}
	}
	js := d.must("inspect", "-o", "json", c.ID[:6])
	for _, s := range []string{`"freezing_time"`, `"pages_written"`, `"memory_bytes"`, `"sha256"`} {
		if !strings.Contains(js, s) {
			t.Errorf("inspect -o json lacks %s", s)
		}
	}
}

// TestParallelCreates: different targets checkpoint at once; creates of one
// target are serialized, so they chain parent to child.
func TestParallelCreates(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("a", 32)
	d.runLoad("b", 32)
	errs := make(chan error, 4)
	for _, tg := range []string{"a", "b", "a", "b"} {
		go func() {
			_, e, err := d.ctl("create", tg, "--leave-running")
			if err != nil {
				err = fmt.Errorf("create %s: %v: %s", tg, err, e)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	byName := map[string]checkpoint{}
	for _, c := range d.checkpoints() {
		byName[c.Name] = c
	}
	for _, tg := range []string{"a", "b"} {
		first, second := byName[tg+"-1"], byName[tg+"-2"]
		if first.ID == "" || second.ID == "" {
			t.Fatalf("checkpoints of %s: %+v", tg, byName)
		}
		if first.Parent != "" || second.Parent != first.ID {
			t.Errorf("%s chain: %s(parent %q) -> %s(parent %q)", tg, first.Name, first.Parent, second.Name, second.Parent)
		}
	}
}

// TestConcurrentCRIU: dumps of targets working in different directories
// and restores run at the same time, many rounds, and all succeed; dumps
// of targets sharing a directory take turns (see criu.DumpKeys).
func TestConcurrentCRIU(t *testing.T) {
	d := startDaemon(t)
	d.runLoadIn(t.TempDir(), "a", 16)
	d.runLoadIn(t.TempDir(), "b", 16)
	d.runLoad("c", 16)
	d.runLoad("e", 16) // shares c's directory
	all := func(ops [][]string) {
		t.Helper()
		errs := make(chan error, len(ops))
		for _, op := range ops {
			go func() {
				_, e, err := d.ctl(op...)
				if err != nil {
					err = fmt.Errorf("%s: %v: %s", strings.Join(op, " "), err, e)
				}
				errs <- err
			}()
		}
		for range ops {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	for range 10 {
		all([][]string{{"create", "a", "--leave-running"}, {"create", "b", "--leave-running"},
			{"create", "c", "--leave-running"}, {"create", "e", "--leave-running"}})
	}
	for i := range 5 {
		all([][]string{{"restore", "a-1", "--name", fmt.Sprintf("ra%d", i)},
			{"restore", "b-1", "--name", fmt.Sprintf("rb%d", i)}, {"restore", "c-1", "--name", fmt.Sprintf("rc%d", i)}})
	}
	running := 0
	for _, tg := range d.ps() {
		if tg.Running {
			running++
		}
	}
	if n := len(d.checkpoints()); n != 40 || running != 4+15 {
		t.Errorf("%d checkpoints (want 40), %d running (want 19)", n, running)
	}
}
