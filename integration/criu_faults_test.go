package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opDeadline bounds a create or restore whose CRIU a test killed: it must
// answer within seconds, not hang.
const opDeadline = 30 * time.Second

// startCtl starts ckptctl in the background; wait returns its error and
// stderr, failing the test (with diagnostics) if it does not end in time.
func (d *daemon) startCtl(args ...string) (wait func() (string, error)) {
	d.t.Helper()
	cmd := exec.Command(bins.ckptctl, append([]string{"--socket", d.socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return func() (string, error) {
		select {
		case err := <-done:
			return stderr.String(), err
		case <-time.After(opDeadline):
			d.t.Errorf("ckptctl %s: no answer within %s\n%s", strings.Join(args, " "), opDeadline, d.diagnose())
			cmd.Process.Kill()
			return stderr.String(), <-done
		}
	}
}

// criuGone waits until no criu process is left on this machine and no
// zombie among ckptd's children; the tests of this package are the only
// CRIU users while they run.
func (d *daemon) criuGone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := criuProcesses()
		zombies := zombieChildren(d.cmd.Process.Pid)
		if len(left) == 0 && len(zombies) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: criu processes %v, zombie children of ckptd %v\n%s", left, zombies, d.diagnose())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func criuProcesses() []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && strings.Contains(readFile(fmt.Sprintf("/proc/%d/stat", pid)), "(criu)") {
			out = append(out, pid)
		}
	}
	return out
}

func zombieChildren(ppid int) []int {
	var out []int
	for _, f := range strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%d/children", ppid, ppid))) {
		pid, _ := strconv.Atoi(f)
		s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
			out = append(out, pid)
		}
	}
	return out
}

// traced reports whether pid is ptrace-stopped or seized by a tracer.
func traced(pid int) bool {
	for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}

// stagedPages reports whether a dump in staging has begun writing pages.
func stagedPages(root string) bool {
	m, _ := filepath.Glob(filepath.Join(root, "staging", "*", "pages-*.img"))
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return true
		}
	}
	return false
}

// assertClean checks what a failed create or restore must leave: the
// workload running on where it was, no CRIU, no zombie, nothing new
// listed, staging empty.
//
// One loss is CRIU's, not ckptd's, and is reported instead: a CRIU killed
// while it runs an injected syscall in the task (code "syscall; int3" at
// the start of an executable mapping, registers saved only in CRIU's
// memory) leaves the task to hit that int3 untraced, or to run on with
// registers that are not its own: it dies of SIGTRAP (seen: rip 0x400003 in
// memload's crash report; Go reports the signal and exits 2) or SIGSEGV.
// It returns false then.
func (d *daemon) assertClean(t *testing.T, w target, before status, listed int) bool {
	t.Helper()
	d.criuGone(t)
	crashed := func() bool {
		if !gone(w.Ref.PID) {
			return false
		}
		exit := ""
		for _, tg := range d.ps() {
			if tg.Ref.Name == w.Ref.Name {
				exit = tg.Exit
			}
		}
		sig := crashSignal.FindString(readFile(w.Ref.LogPath))
		if sig == "" && !strings.HasPrefix(exit, "killed by SIG") {
			return false // not a crash: the assertions below say what it is
		}
		t.Logf("the workload crashed (%s %q): CRIU was killed inside its injected code", exit, sig)
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !(alive(w.Ref.PID) && !traced(w.Ref.PID)) {
		if crashed() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("workload not running untraced: %s\n%s", threadStates(w.Ref.PID), d.diagnose())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The crash may come a moment after the workload looked fine.
	after, ok := statusUnless(t, w.Ref.PID, w.Ref.LogPath, crashed)
	if !ok {
		return false
	}
	continues(t, before, after)
	if n := len(d.checkpoints()); n != listed {
		t.Errorf("%d checkpoints listed, want %d", n, listed)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("staging not empty: %v", left)
	}
	return true
}

// crashSignal is the Go runtime's report of a fatal signal.
var crashSignal = regexp.MustCompile(`(?m)^SIG[A-Z]+: .*$`)

// gone reports whether pid has ended (exited or a zombie), as opposed to
// stopped.
func gone(pid int) bool {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z") || strings.HasPrefix(s[i+1:], " X")
}

// logOnFailure puts the end of w's output into the log of a failed test
// (a Go workload that crashed says how).
func logOnFailure(t *testing.T, w target) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log:\n%s\n...\n%s", w.Ref.Name, grepLines(readFile(w.Ref.LogPath), "SIG"), tail(readFile(w.Ref.LogPath), 8))
		}
	})
}

// killCRIUWhen starts op, waits for ckptd's CRIU helper and for ready,
// SIGKILLs the helper and returns op's outcome.
func (d *daemon) killCRIUWhen(t *testing.T, ready func() bool, op ...string) (string, error) {
	t.Helper()
	wait := d.startCtl(op...)
	var criu int
	waitFor(t, "criu helper", func() bool { criu = criuChild(d.cmd.Process.Pid); return criu > 0 })
	deadline := time.Now().Add(10 * time.Second)
	for !ready() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	syscall.Kill(criu, syscall.SIGKILL)
	return wait()
}

// TestCRIUKilledAtEachPhase kills ckptd's CRIU on purpose during its
// start-up probing, while the tree is frozen and while pages are written,
// several rounds each: every create fails at once with the CRIU log named,
// and the workload runs on untouched.
func TestCRIUKilledAtEachPhase(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("victim", 64)
	logOnFailure(t, w)
	lost := map[string]int{}
	phases := []struct {
		name  string
		ready func() bool
	}{
		{"start-up", func() bool { return true }},
		{"frozen", func() bool { return traced(w.Ref.PID) }},
		{"pages", func() bool { return stagedPages(d.root) }},
	}
	for _, ph := range phases {
		for round := range 4 {
			before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
			stderr, err := d.killCRIUWhen(t, ph.ready, "create", w.Ref.Name, "--leave-running", "--name", "kept")
			if err == nil {
				t.Logf("%s round %d: the dump finished before the kill landed", ph.name, round)
				d.must("rm", "kept")
			} else {
				criuLogKept(t, stderr)
			}
			if !d.assertClean(t, w, before, 0) {
				lost[ph.name]++
				w = d.runLoad(fmt.Sprintf("victim-%s-%d", ph.name, round), 64)
				logOnFailure(t, w)
			}
		}
	}
	t.Logf("workloads lost to a crash per phase (of 4 kills): %v", lost)
}

// TestCRIUKilledCampaign: 40 creates whose CRIU is SIGKILLed 0-400 ms after
// it appears never hang, never leave a CRIU or a zombie behind, and never
// leave the workload stopped.
func TestCRIUKilledCampaign(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("victim", 64)
	logOnFailure(t, w)
	saved, lost := 0, 0
	for range 40 {
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		delay := time.Duration(rand.IntN(400)) * time.Millisecond
		start := time.Now()
		stderr, err := d.killCRIUWhen(t, func() bool { return time.Since(start) >= delay }, "create", w.Ref.Name, "--leave-running")
		if err == nil || strings.Contains(stderr, "was saved, but then") {
			saved++ // the kill came after the commit
		}
		if !d.assertClean(t, w, before, saved) {
			lost++
			w = d.runLoad(fmt.Sprintf("victim-%d", lost), 64)
			logOnFailure(t, w)
		}
	}
	t.Logf("40 kills: %d creates finished before their kill, %d workloads lost to a crash", saved, lost)
}

// TestCRIUKilledDuringRestore: a restore whose CRIU is killed as it starts,
// while it builds the tree, or at a random moment leaves no half-restored
// process behind; the checkpoint stays and restores afterwards.
func TestCRIUKilledDuringRestore(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("src", 32)
	d.create("src", "--leave-running", "--name", "snap")
	self := d.cmd.Process.Pid
	// Failed restores keep their logs: only a log that is not yet known
	// belongs to the restore under way.
	seen := map[string]bool{}
	restoring := func() bool {
		logs, _ := filepath.Glob(filepath.Join(d.root, "restores", "*", "restore.log"))
		for _, l := range logs {
			if !seen[l] && strings.Contains(readFile(l), "Forking task") {
				seen[l] = true
				return true
			}
		}
		return false
	}
	phases := []struct {
		name  string
		ready func() bool
	}{
		{"start-up", func() bool { return true }},
		{"restoring", restoring},
		{"random", func() bool { time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond); return true }},
	}
	for _, ph := range phases {
		for round := range 4 {
			name := fmt.Sprintf("copy-%s-%d", ph.name, round)
			start := time.Now()
			stderr, err := d.killCRIUWhen(t, ph.ready, "restore", "snap", "--name", name)
			t.Logf("%s round %d: answered in %s: %v %s", ph.name, round, time.Since(start).Round(time.Millisecond), err, stderr)
			if err == nil {
				t.Logf("%s round %d: the restore finished before the kill landed", ph.name, round)
				pid := d.workload(name).Ref.PID
				d.must("kill", name)
				waitFor(t, "copy gone", func() bool { return !alive(pid) })
			} else {
				criuLogKept(t, stderr)
			}
			d.criuGone(t)
			for _, tg := range d.ps() {
				if tg.Running && tg.Ref.Name != "src" {
					t.Errorf("%s round %d: %s runs after its restore failed", ph.name, round, tg.Ref.Name)
				}
			}
			for _, c := range strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%d/children", self, self))) {
				if pid, _ := strconv.Atoi(c); pid != w.Ref.PID && !gone(pid) {
					t.Errorf("%s round %d: process %d left among ckptd's children: %s", ph.name, round, pid, readFile("/proc/"+c+"/stat"))
				}
			}
		}
	}
	d.must("restore", "snap", "--name", "after")
	d.must("kill", "after")
}

// TestCRIUHung: a CRIU that stops answering while it holds a workload
// frozen is ended by the watchdog (--criu-timeout): the create fails with
// DeadlineExceeded naming the log and its last line, the workload runs on
// with its state, nothing is listed or staged, and the stopped CRIU is
// gone. Meanwhile a create of a target working in another directory
// completes at once; one working in the same directory (whose dump would
// collide in CRIU's parasite, see criu.DumpKeys) waits and then succeeds.
func TestCRIUHung(t *testing.T) {
	d := startDaemonWith(t, "--criu-timeout", "4s")
	w := d.runLoad("hung", 64)
	other := d.runLoadIn(t.TempDir(), "other", 16)
	same := d.runLoad("same", 16)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	wait := d.startCtl("create", "hung", "--leave-running")
	var criu int
	waitFor(t, "criu helper", func() bool { criu = criuChild(d.cmd.Process.Pid); return criu > 0 })
	waitFor(t, "workload frozen", func() bool { return traced(w.Ref.PID) })
	if err := syscall.Kill(criu, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitSame := d.startCtl("create", "same", "--leave-running", "--name", "same-ok")
	if _, errOut, err := d.ctl("create", "other", "--leave-running", "--name", "other-ok"); err != nil {
		t.Errorf("create of a target in another directory failed: %s", errOut)
	}
	otherTook := time.Since(start)
	stderr, err := wait()
	took := time.Since(start)
	if err == nil {
		t.Fatal("create succeeded although its CRIU was stopped")
	}
	t.Logf("hung create failed after %s; the other target's create took %s: %s",
		took.Round(time.Millisecond), otherTook.Round(time.Millisecond), stderr)
	if otherTook >= took {
		t.Errorf("the other target's create waited for the hung one (%s >= %s)", otherTook, took)
	}
	for _, want := range []string{"no answer within 4s", "deadline exceeded", "last log line", "dump.log"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("error lacks %q: %s", want, stderr)
		}
	}
	if stderr, err := waitSame(); err != nil {
		t.Errorf("create of a target in the same directory, queued meanwhile, failed: %s", stderr)
	}
	d.assertClean(t, w, before, 2)
	for _, x := range []target{other, same} {
		if !alive(x.Ref.PID) {
			t.Errorf("%s is not running", x.Ref.Name)
		}
	}
}

// TestClientGoneBeforeFreeze: a create whose client disconnects while it
// waits for CRIU is abandoned; its target is never frozen.
func TestClientGoneBeforeFreeze(t *testing.T) {
	d := startDaemonWith(t, "--criu-timeout", "6s")
	w := d.runLoad("busy", 32)
	idle := d.runLoad("idle", 16)

	wait := d.startCtl("create", "busy", "--leave-running")
	var criu int
	// Stopped once its log exists: the failed dump's log is what the test
	// expects to find (a CRIU stopped before it opened its log left none).
	waitFor(t, "criu helper with its log", func() bool {
		criu = criuChild(d.cmd.Process.Pid)
		logs, _ := filepath.Glob(filepath.Join(d.root, "dumps", "*", "dump.log"))
		return criu > 0 && len(logs) == 1
	})
	syscall.Kill(criu, syscall.SIGSTOP) // holds CRIU's queue until the watchdog
	gone := exec.Command(bins.ckptctl, "--socket", d.socket, "create", "idle", "--leave-running")
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	gone.Process.Kill() // the user's ctrl-c
	gone.Wait()
	wait()
	d.criuGone(t)
	time.Sleep(500 * time.Millisecond) // anything carried out late would show now
	// The hung create's failed dump keeps its log; the abandoned one never
	// ran CRIU, so it has none.
	if logs, _ := filepath.Glob(filepath.Join(d.root, "dumps", "*", "dump.log")); len(logs) != 1 {
		t.Errorf("CRIU dump logs %v, want only the hung create's", logs)
	}
	if n := len(d.checkpoints()); n != 0 {
		t.Errorf("%d checkpoints listed, want none", n)
	}
	if !alive(idle.Ref.PID) || traced(idle.Ref.PID) || !alive(w.Ref.PID) {
		t.Error("a workload is not running untraced")
	}
}

// TestDaemonKilledCampaign kills ckptd at random moments of creates and
// restores and restarts it at once, many rounds: start-up never fails on
// what the dead daemon's CRIU left, ends that CRIU, and leaves no partial
// checkpoint; the workload runs on.
func TestDaemonKilledCampaign(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("victim", 64)
	d.create("victim", "--leave-running", "--name", "base")
	for round := range 16 {
		before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
		op := []string{"create", "victim", "--leave-running"}
		if round%2 == 1 {
			op = []string{"restore", "base", "--name", fmt.Sprintf("copy%d", round)}
		}
		wait := d.startCtl(op...)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		d.kill9()
		wait()
		d.start() // must come up whatever the dead daemon's CRIU was doing
		d.criuGone(t)
		waitFor(t, "workload running, not traced", func() bool { return alive(w.Ref.PID) && !traced(w.Ref.PID) })
		continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
		if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
			t.Errorf("round %d: staging not empty after start-up: %v", round, left)
		}
		if left, _ := os.ReadDir(filepath.Join(d.root, "criu")); len(left) != 0 {
			t.Errorf("round %d: CRIU records left after start-up: %v", round, left)
		}
		for _, c := range d.checkpoints() {
			d.must("restore", c.Name, "--name", "check")
			d.must("kill", "check")
			break
		}
		// A copy the dead daemon restored is nobody's child now: end it.
		for _, tg := range d.ps() {
			if tg.Running && tg.Ref.PID != w.Ref.PID && tg.Ref.Kind == "workload" {
				syscall.Kill(tg.Ref.PID, syscall.SIGKILL)
			}
		}
	}
}

// threadStates renders the state and tracer of every thread of pid.
func threadStates(pid int) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, st := range tasks {
		fmt.Fprintf(&b, "%s: %s; ", filepath.Base(filepath.Dir(st)), strings.ReplaceAll(grepLines(readFile(st), "State")+" "+grepLines(readFile(st), "TracerPid"), "\t", " "))
	}
	return b.String()
}

// TestDaemonKilledWithHungCRIU: a ckptd killed while its CRIU holds a
// workload frozen leaves that CRIU behind; when it hangs (here: stopped
// right after the kill, so that the kernel's SIGHUP to a newly orphaned,
// stopped group does not end it), the next ckptd gives it its grace to roll
// back, then ends its whole group before it cleans up, and comes up.
func TestDaemonKilledWithHungCRIU(t *testing.T) {
	d := startDaemon(t)
	// 1 GiB: the stop below must land while CRIU still dumps. It follows
	// the kill, since a group stopped when ckptd dies is orphaned and the
	// kernel continues it (SIGHUP, SIGCONT); the dump must outlast both.
	w := d.runLoad("victim", 1024)
	logOnFailure(t, w)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	wait := d.startCtl("create", "victim", "--leave-running")
	var criu int
	waitFor(t, "criu helper", func() bool { criu = criuChild(d.cmd.Process.Pid); return criu > 0 })
	waitFor(t, "workload frozen", func() bool { return traced(w.Ref.PID) })
	d.kill9()
	if err := syscall.Kill(criu, syscall.SIGSTOP); err != nil {
		t.Fatalf("CRIU ended before it could be stopped: %v", err)
	}
	wait()
	d.start()
	if !strings.Contains(d.log.String(), "ending a CRIU left by a previous ckptd") {
		t.Errorf("start-up did not report ending the leftover CRIU")
	}
	d.assertClean(t, w, before, 0)
	if left, _ := os.ReadDir(filepath.Join(d.root, "criu")); len(left) != 0 {
		t.Errorf("CRIU records left after start-up: %v", left)
	}
}
