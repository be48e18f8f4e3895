package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/proc"
)

// untouched checks that a workload a failed migration refused is running
// as before: never frozen for good, its memory and counters intact.
func untouched(t *testing.T, w target, before status) {
	t.Helper()
	if !alive(w.Ref.PID) {
		t.Fatalf("workload %s (pid %d) is not running", w.Ref.Name, w.Ref.PID)
	}
	continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
}

// TestMigratePreflight: what the destination lacks is reported before
// anything freezes, and bad requests fail with one line.
func TestMigratePreflight(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")

	// An executable only host a has: b's pre-flight must name it.
	own := filepath.Join(a.dir, "bin", "memload")
	if err := os.MkdirAll(filepath.Dir(own), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", bins.memload, own).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	src.must("run", "--name", "local", "--", own, "--mib", "16")
	w := src.workload("local")
	waitFor(t, "local ready", func() bool { return strings.Contains(readFile(w.Ref.LogPath), "ready") })
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	src.mustFail("executable "+own+" is missing here", "migrate", "local", "--to", b.addr())

	// A workload of the same name already runs on b.
	dst.runLoad("taken", 8)
	x := src.runLoad("taken", 8)
	xBefore := loadStatus(t, x.Ref.PID, x.Ref.LogPath)
	src.mustFail(`workload "taken" runs here already`, "migrate", "taken", "--to", b.addr())

	src.mustFailAll(t, []failCase{
		{"--to HOST:PORT is required", []string{"migrate", "local"}},
		{"want host:port", []string{"migrate", "local", "--to", "nohost"}},
		{"not found", []string{"migrate", "no-such-workload", "--to", b.addr()}},
		{"connection refused", []string{"migrate", "local", "--to", b.ip + ":1"}},
		{`name "../x" contains '..'`, []string{"migrate", "local", "--to", b.addr(), "--name", "../x"}},
	})
	for _, p := range []string{filepath.Join(dst.root, "x"), filepath.Join(filepath.Dir(dst.root), "x")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a refused --name ../x made %s", p)
		}
	}
	untouched(t, w, before)
	untouched(t, x, xBefore)
	if cs := dst.checkpoints(); len(cs) != 0 {
		t.Errorf("destination keeps checkpoints of refused migrations: %v", cs)
	}
	for _, d := range []*daemon{src, dst} {
		if l := leftovers(t, d); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
}

// TestMigrateWrongCA: a peer whose certificate another CA signed is
// refused in both directions, before anything is sent or frozen.
func TestMigrateWrongCA(t *testing.T) {
	a, b := twoHosts(t)
	rogue := t.TempDir()
	ctl(t, "certs", "ca", filepath.Join(rogue, "ca"))
	// A host certificate from the rogue CA, beside the honest CA: its
	// holder trusts honest peers, but honest peers must not trust it.
	rogueHost := func(h *host) string {
		dir := filepath.Join(rogue, h.name)
		ctl(t, "certs", "host", h.name, "--ca", filepath.Join(rogue, "ca"), "--out", dir, "--ip", h.ip)
		if out, err := exec.Command("cp", filepath.Join(h.certs, "ca.pem"), filepath.Join(dir, "ca.pem")).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		return dir
	}

	// a presents a rogue certificate to an honest b.
	src, dst := a.ckptd("", rogueHost(a)), b.ckptd("", "")
	w := src.runLoad("w", 16)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	src.mustFail("refused us", "migrate", "w", "--to", b.addr())
	if !strings.Contains(dst.log.String(), "peer refused") {
		t.Errorf("destination did not log the refusal:\n%s", dst.log)
	}
	untouched(t, w, before)
	src.cleanup()

	// An honest a meets a b that presents a rogue certificate.
	dst.cleanup()
	honest := a.ckptd("", "")
	b.ckptd("", rogueHost(b))
	w = honest.runLoad("w2", 16)
	before = loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	honest.mustFail("certificate signed by unknown authority", "migrate", "w2", "--to", b.addr())
	untouched(t, w, before)
}

// TestMigrateSourceGivesUp: the frozen source stops waiting for the
// destination (--restore-timeout) and resumes; the destination, which
// restored it meanwhile, must stop its copy and drop the checkpoint, so
// that exactly one copy runs.
func TestMigrateSourceGivesUp(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	w := src.runLoad("impatient", 64)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	src.mustFail("did not restore it", "migrate", "impatient", "--to", b.addr(), "--restore-timeout", "1ms")
	untouched(t, w, before)
	waitFor(t, "destination to stop its copy", func() bool {
		return strings.Contains(dst.log.String(), "source resumed its copy after all")
	})
	waitFor(t, "destination copy gone", func() bool {
		for _, x := range dst.ps() {
			if x.Running {
				return false
			}
		}
		return true
	})
	if cs := dst.checkpoints(); len(cs) != 0 {
		t.Errorf("destination keeps the checkpoint of a migration the source gave up: %v", cs)
	}
	for _, d := range []*daemon{src, dst} {
		if l := leftovers(t, d); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
}

// TestMigrateSourceDiesAfterCommit: while the destination restores, the
// frozen source's copy dies and so does its CRIU, so the source's dump
// fails after the commit. The destination's copy is then the only one
// left: it must keep running, with its checkpoint, and the source must
// say so.
func TestMigrateSourceDiesAfterCommit(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	w := src.runLoad("fragile", 256)
	wait := src.startCtl("migrate", "fragile", "--to", b.addr())
	waitFor(t, "destination restoring", func() bool { return strings.Contains(dst.log.String(), `msg="criu restore"`) })
	var killed []int
	for _, pid := range proc.Tree(src.cmd.Process.Pid) {
		if st, err := proc.ReadStat(pid); err == nil && st.Comm == "criu" {
			killed = append(killed, pid)
		}
	}
	if len(killed) == 0 {
		t.Fatal("no CRIU under the source ckptd while the destination restores")
	}
	for _, pid := range append(killed, w.Ref.PID) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	out, err := wait()
	if err == nil || !strings.Contains(out, "keeps the copy") {
		t.Errorf("migrate: %v %s; want an error saying the destination keeps its copy", err, out)
	}
	time.Sleep(2 * time.Second) // give a wrongly stopped copy time to go
	running := 0
	for _, x := range dst.ps() {
		if x.Ref.Name == "fragile" && x.Running {
			running++
		}
	}
	if running != 1 {
		t.Fatalf("destination runs %d copies; the only copy left was lost:\n%s", running, dst.log)
	}
	if cs := dst.checkpoints(); len(cs) != 1 {
		t.Errorf("destination keeps %d checkpoints, want 1", len(cs))
	}
}

// TestMigrateDestinationCrashBeforePublish kills the destination ckptd
// after the restore, while it publishes the received checkpoint: the next
// start seals it, so the running target's origin is not lost. A
// pre-copy's checkpoint, restored from its chain of rounds, is made whole
// from them at that start.
func TestMigrateDestinationCrashBeforePublish(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	for _, mode := range []string{"--precopy=off", "--precopy"} {
		name := "keeper-" + strings.NewReplacer("-", "", "=", "").Replace(mode)
		// The source holds "done" back (it pauses once per ckptd, so
		// each mode gets a fresh one): the destination has restored and
		// waits for it, before its publish.
		mark := filepath.Join(t.TempDir(), "paused")
		src.stop()
		src.env = []string{"CKPTD_FAILPOINT_PAUSE_BEFORE=done", "CKPTD_FAILPOINT_PAUSE_MARK=" + mark}
		src.start()
		src.runLoad(name, 512)
		wait := src.startCtl("migrate", name, "--to", b.addr(), mode)
		waitFor(t, "the source to hold done back", func() bool { _, err := os.Stat(mark); return err == nil })
		if !strings.Contains(dst.log.String(), "incoming migration phases") {
			t.Fatalf("%s: the destination has not restored when the source would say done:\n%s", mode, dst.log)
		}
		dst.cmd.Process.Signal(syscall.SIGSTOP)
		staged, _ := os.ReadDir(filepath.Join(dst.root, "staging"))
		dst.kill9()
		if len(staged) != 1 {
			t.Fatalf("%s: the kill did not land before the publish: staging holds %d entries", mode, len(staged))
		}
		os.Remove(mark)
		wait()
		dst.start()
		var c checkpoint
		for _, x := range dst.checkpoints() {
			if x.ID == staged[0].Name() {
				c = x
			}
		}
		if c.ID == "" {
			t.Fatalf("%s: after the crash the destination lists %+v, want checkpoint %s", mode, dst.checkpoints(), staged[0].Name())
		}
		dst.must("verify", c.Name)
		var restoredFrom string
		for _, x := range dst.ps() {
			if x.Ref.Name == name && x.Running {
				restoredFrom = x.RestoredFrom
			}
		}
		if restoredFrom != c.ID {
			t.Errorf("%s: running copy restored from %q, want %s", mode, restoredFrom, c.ID)
		}
		if l := leftovers(t, dst); len(l) > 0 {
			t.Errorf("%s: the destination keeps %v", mode, l)
		}
		dst.must("kill", name)
	}
}

// TestMigrateSourceStopsDuringRestore stops the source ckptd (SIGTERM,
// with a 1 s shutdown grace) while the destination restores: the source
// must wait for the destination's answer past its grace, finish the
// migration, and only then exit, so that exactly one copy runs.
func TestMigrateSourceStopsDuringRestore(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", "", "--shutdown-grace", "1s"), b.ckptd("", "")
	w := src.runLoad("leaver", 512)
	wait := src.startCtl("migrate", "leaver", "--to", b.addr())
	waitFor(t, "destination restoring", func() bool { return strings.Contains(dst.log.String(), `msg="criu restore"`) })
	src.cmd.Process.Signal(syscall.SIGTERM)
	out, err := wait()
	if err != nil {
		t.Errorf("migrate during the source's shutdown: %v %s", err, out)
	}
	src.cmd.Wait()
	if alive(w.Ref.PID) {
		t.Error("the source's copy runs on after the migration")
	}
	time.Sleep(time.Second)
	running := 0
	for _, x := range dst.ps() {
		if x.Ref.Name == "leaver" && x.Running {
			running++
		}
	}
	if running != 1 {
		t.Fatalf("destination runs %d copies, want 1", running)
	}
}

// TestMigrateFenced: the source ckptd dies after the destination restored
// but before it confirmed its own copy gone (it is stopped, then killed;
// its CRIU rolls the source back). The destination must keep its copy
// stopped, in doubt, so that one copy runs, until an operator settles it:
// --discard kills it; in a second round, with the source's copy gone too,
// --resume runs it with the memory it had.
func TestMigrateFenced(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	for _, resume := range []bool{false, true} {
		name := fmt.Sprintf("fence-%v", resume)
		w := src.runLoadIn(t.TempDir(), name, 64)
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		restores := strings.Count(dst.log.String(), `msg="criu restore"`)
		wait := src.startCtl("migrate", name, "--to", b.addr())
		waitFor(t, "destination restoring", func() bool { return strings.Count(dst.log.String(), `msg="criu restore"`) > restores })
		src.cmd.Process.Signal(syscall.SIGSTOP) // it hears nothing from here on
		killed := false
		waitFor(t, "destination in doubt", func() bool {
			if !killed && strings.Count(dst.log.String(), "incoming migration phases") > restores {
				src.kill9() // the destination waits for its word: cut it
				killed = true
			}
			return strings.Count(dst.log.String(), `msg="incoming migration in doubt`) > restores
		})
		wait()
		src.start()
		var copyPID int
		for _, x := range dst.ps() {
			if x.Ref.Name == name {
				copyPID = x.Ref.PID
				if x.InDoubt == "" {
					t.Errorf("%s on the destination is not marked in doubt", name)
				}
			}
		}
		if copyPID == 0 || !strings.Contains(threadStates(copyPID), "T (stopped)") {
			t.Fatalf("destination copy %d is not stopped: %s", copyPID, threadStates(copyPID))
		}
		waitFor(t, "the source's copy running again", func() bool { return alive(w.Ref.PID) && !traced(w.Ref.PID) })
		if !resume {
			continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
			dst.must("migrate", "--resolve", name, "--discard")
			waitFor(t, "discarded copy gone", func() bool { return !alive(copyPID) })
			src.must("kill", name)
			continue
		}
		src.must("kill", name)
		dst.must("migrate", "--resolve", name, "--resume")
		x := dst.workload(name)
		continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
		dst.mustFail("not a migration in doubt", "migrate", "--resolve", name, "--resume")
	}
}

// localConnector connects, from inside netns, to every loopback TCP
// listener it sees, and holds the connections: a local user trying to
// take a migration's page stream. Stopped by PID when the test ends.
const localConnector = `
import socket, subprocess, time
held = []
while True:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) > 3 and f[3].startswith("127.0.0.1:"):
            try:
                held.append(socket.create_connection(("127.0.0.1", int(f[3].rsplit(":", 1)[1])), timeout=0.2))
            except OSError:
                pass
    time.sleep(0.002)
`

// TestMigrationIgnoresLocalConnects: a local process that connects to
// every loopback listener on the source cannot take or break a
// migration's page stream; before, the source's page server listened
// on a loopback port for the whole dump, and the first to connect got
// it.
func TestMigrationIgnoresLocalConnects(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	w := src.runLoad("mover", 128)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	attacker := exec.Command("ip", "netns", "exec", a.netns, "python3", "-c", localConnector)
	if err := attacker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { attacker.Process.Kill(); attacker.Wait() })
	r := src.migrate("mover", "--to", b.addr())
	if !r.SourceStopped || r.Name != "mover" {
		t.Fatalf("migrate result %+v", r)
	}
	moved := dst.workload("mover")
	if after := loadStatus(t, moved.Ref.PID, moved.Ref.LogPath); after.Hash != before.Hash {
		t.Errorf("memory hash %s after the migration, want %s", after.Hash, before.Hash)
	}
}
