package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/ckptd/ckptd/test/nettest"
)

// TestReboot stands in for a reboot. Four persisted targets: a memload
// workload (run --persist), a terminal session, a container and a
// workload holding a file open (persist on).
//   - A stop that is no shutdown (an upgrade) checkpoints nothing: every
//     target runs on and the next ckptd adopts it.
//   - A stop that is (--checkpoint-on-stop) checkpoints and stops them.
//     The test then kills what is left of them, as a reboot would, and
//     removes the held file, as a reboot empties /tmp.
//   - The next start, in another boot, restores three with their state.
//     The fourth fails: it is listed with the reason, its checkpoint kept,
//     and it restores by hand once its file is back.
func TestReboot(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	ctrLog := x.run("web", counterScript)
	waitCount(t, ctrLog, 2)
	d.must("run", "--persist", "--name", "job", "--", bins.memload, "--mib", "16")
	job := d.workload("job")
	waitFor(t, "job ready", func() bool { return strings.Contains(readFile(job.Ref.LogPath), "ready") })
	startRepl(t, d, "sess")
	held := filepath.Join(t.TempDir(), "held")
	if err := os.WriteFile(held, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must("run", "--name", "fragile", "--", "/bin/sh", "-c", "exec 3<"+held+"; exec sleep 100000")
	for _, name := range []string{"sess", "ctr:default/web", "fragile"} {
		var tg target
		if err := json.Unmarshal([]byte(d.must("persist", name, "on", "-o", "json")), &tg); err != nil || !tg.Persist {
			t.Fatalf("persist %s on answered %+v, %v", name, tg, err)
		}
	}
	d.mustFail("host process", "persist", "1", "on")
	before := loadStatus(t, job.Ref.PID, job.Ref.LogPath)
	pids := map[string]int{}
	for _, tg := range d.ps() {
		if !tg.Persist {
			t.Errorf("%s is not shown persisted", tg.Ref.Name)
		}
		pids[tg.Ref.Name] = tg.Ref.PID
	}

	d.stop() // an upgrade's stop
	for name, pid := range pids {
		if !alive(pid) {
			t.Fatalf("a stop that is no shutdown ended %s", name)
		}
	}
	d.args = append(d.args, "--checkpoint-on-stop")
	d.start()
	if cs := d.checkpoints(); len(cs) != 0 {
		t.Fatalf("a stop that is no shutdown took checkpoints: %+v", cs)
	}
	for _, tg := range d.ps() {
		if !tg.Running || tg.Ref.PID != pids[tg.Ref.Name] {
			t.Fatalf("not adopted as it ran: %+v", tg)
		}
	}
	counts, _ := counterLines(readFile(ctrLog))
	d.stop() // the shutdown's
	last := counts[len(counts)-1]
	if c, _ := counterLines(readFile(ctrLog)); len(c) > 0 {
		last = c[len(c)-1]
	}
	// The reboot: whatever still runs of them goes, the terminal's holder
	// too, and /tmp is emptied.
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for pid := range d.holders() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.Remove(held); err != nil {
		t.Fatal(err)
	}
	d.env = append(d.env, "CKPTD_FAILPOINT_BOOT_ID=reboot-test-boot")
	d.start()

	waitFor(t, "the persisted targets restored or failed", func() bool {
		n := 0
		for _, tg := range d.ps() {
			if tg.Running || tg.PersistError != "" {
				n++
			}
		}
		return n == 4
	})
	if cs := d.checkpoints(); len(cs) != 4 {
		t.Fatalf("the shutdown took %d checkpoints, want 4: %+v", len(cs), cs)
	}
	continues(t, before, loadStatus(t, d.workload("job").Ref.PID, job.Ref.LogPath))
	c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "sess")
	c.ask("val", "x", "41")
	c.detach("sess")
	restoredLog := filepath.Join(d.root, "containers", "default", "web", "output.log")
	waitCount(t, restoredLog, last+3)
	if counts, markers := counterLines(readFile(restoredLog)); counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("the container restored at %d (%q), want %d (kept)", counts[0], markers[0], last+1)
	}
	f := d.workload("fragile")
	if f.Running || !strings.Contains(f.PersistError, "restore") || f.PersistCkpt == "" {
		t.Fatalf("the failed restore is listed as %+v, want its reason and checkpoint", f)
	}
	ps := d.must("ps")
	t.Logf("ps after the reboot:\n%s", ps)
	if !strings.Contains(ps, "not restored: ") {
		t.Errorf("ps without -a does not show the failed restore:\n%s", ps)
	}
	if err := os.WriteFile(held, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must("restore", f.PersistCkpt)
	if f = d.workload("fragile"); !f.Running || f.PersistCkpt != "" || f.PersistError != "" {
		t.Fatalf("restored by hand, it is listed as %+v", f)
	}
	d.must("persist", "fragile", "off")
	if f = d.workload("fragile"); f.Persist {
		t.Fatal("persist off left it persisted")
	}
	d.must("kill", "fragile")
}

// TestShutdownBound: a shutdown's checkpoints end within
// shutdown_checkpoint_timeout. A persisted workload whose prepare hook
// outlasts it is not checkpointed: it was never frozen and runs on until
// the reboot, and the next start lists it with the reason. Another is
// checkpointed meanwhile and restored.
func TestShutdownBound(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "ckptd.toml")
	if err := os.WriteFile(conf, []byte("shutdown_checkpoint_timeout = \"2s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, "--config", conf, "--checkpoint-on-stop")
	d.must("run", "--persist", "--name", "slow", "--hook", "prepare=sleep 60", "--", "/bin/sleep", "100000")
	d.must("run", "--persist", "--name", "quick", "--", "/bin/sleep", "100000")
	slow, quick := d.workload("slow"), d.workload("quick")
	start := time.Now()
	d.stop()
	if took := time.Since(start); took > 50*time.Second {
		t.Fatalf("the stop took %s: it waited for the prepare hook (60 s), not its bound", took)
	}
	if !alive(slow.Ref.PID) {
		t.Fatal("the workload whose checkpoint was cut short is not running")
	}
	if alive(quick.Ref.PID) {
		t.Fatal("the other workload was not checkpointed and stopped")
	}
	syscall.Kill(slow.Ref.PID, syscall.SIGKILL) // the reboot
	waitFor(t, "slow gone", func() bool { return !alive(slow.Ref.PID) })
	d.env = append(d.env, "CKPTD_FAILPOINT_BOOT_ID=bound-test-boot")
	d.start()
	waitFor(t, "quick restored", func() bool { return d.workload("quick").Running })
	s := d.workload("slow")
	if s.Running || !strings.Contains(s.PersistError, "its checkpoint at shutdown failed") ||
		!strings.Contains(s.PersistError, "shutdown_checkpoint_timeout (2s)") {
		t.Fatalf("the workload the shutdown could not checkpoint is listed as %+v", s)
	}
}

// TestRebootGroup: a consumer and a producer joined by TCP, persisted in
// one group, are checkpointed at one instant by a shutdown (a group
// checkpoint, their connection with them) and restored together by the
// next start, in another boot: the conversation goes on with the consumer
// never ahead of the producer, nothing lost or repeated.
func TestRebootGroup(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemonWith(t, "--checkpoint-on-stop")
	thawOnFailure(t, d)
	got := startTalkingPair(t, d)
	d.must("persist", "consumer", "on", "--group", "pc")
	d.must("persist", "producer", "on", "--group", "pc")
	d.mustFail("groups take workloads", "persist", "ctr:default/x", "on", "--group", "pc")
	if w := d.workload("producer"); !w.Persist || w.PersistGroup != "pc" {
		t.Fatalf("producer listed as %+v", w)
	}

	cLog, pLog := d.workload("consumer").Ref.LogPath, d.workload("producer").Ref.LogPath
	d.stop()
	seen, sentBefore := len(readFile(cLog)), len(readFile(pLog))
	d.env = append(d.env, "CKPTD_FAILPOINT_BOOT_ID=group-reboot-boot")
	d.start()
	waitFor(t, "both restored", func() bool { return d.workload("producer").Running && d.workload("consumer").Running })
	before := got()
	waitFor(t, "the conversation to go on", func() bool { return got() >= before+50 })
	pairInStep(t, readFile(cLog)[seen:], readFile(pLog)[sentBefore:])
	if ls := d.must("ls"); !regexp.MustCompile(`(?m)^pc-\S+ .*consumer-1 \(consumer\), producer-1 \(producer\)`).MatchString(ls) {
		t.Fatalf("ls does not show the shutdown's group, members in the order marked:\n%s", ls)
	}
	if left := frozenLeft(d); len(left) != 0 {
		t.Fatalf("freezer cgroups left: %v", left)
	}
}
