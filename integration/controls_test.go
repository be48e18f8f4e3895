package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/freezer"
)

// TestWorkloadEnvironment: a workload gets PATH, what --env-file and --env
// set, and a variable --env names from ckptctl's environment, and nothing
// else of it; --workdir sets where it starts.
func TestWorkloadEnvironment(t *testing.T) {
	d := startDaemon(t)
	t.Setenv("CKPTD_IT_SECRET", "not-for-the-workload")
	t.Setenv("CKPTD_IT_PASSED", "passed-on")
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("# a comment\nFROM_FILE=f\nBOTH=file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d.must("run", "--name", "envy", "--env-file", file, "-e", "BOTH=flag", "-e", "CKPTD_IT_PASSED", "-w", dir,
		"--", "sh", "-c", "env; echo cwd=$(pwd); sleep 1000")
	var env string
	waitFor(t, "the workload's environment", func() bool { env = d.must("logs", "envy"); return strings.Contains(env, "cwd=") })
	for _, want := range []string{"FROM_FILE=f", "BOTH=flag", "CKPTD_IT_PASSED=passed-on", "PATH=/usr/local/sbin:", "cwd=" + dir, "CKPTD_NOTIFY_SOCKET="} {
		if !strings.Contains(env, want) {
			t.Errorf("the workload's environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "CKPTD_IT_SECRET") {
		t.Errorf("ckptctl's own environment reached the workload:\n%s", env)
	}
	d.must("kill", "envy")
}

// TestStop: stop sends SIGTERM and waits; a workload that handles it ends
// at once, one that does not (pid 1 of its namespace takes no signal it
// does not handle) is killed after --time.
func TestStop(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "--name", "polite", "--", "sh", "-c", `trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.05; done`)
	d.must("run", "--name", "deaf", "--", "sleep", "1000")
	start := time.Now()
	if out := d.must("stop", "polite"); strings.Contains(out, "killed") {
		t.Fatalf("stop killed a workload that handles SIGTERM: %s", out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop of a workload that handles SIGTERM took %s", took)
	}
	waitFor(t, "polite's exit recorded", func() bool { return strings.Contains(d.workload("polite").Exit, "exited 0") })
	if !strings.Contains(d.must("logs", "polite"), "got TERM") {
		t.Errorf("polite did not see SIGTERM")
	}
	start = time.Now()
	if out := d.must("stop", "deaf", "--time", "1"); !strings.Contains(out, "killed") {
		t.Fatalf("stop of a workload deaf to SIGTERM: %q", out)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("stop --time 1 killed after %s", took)
	}
	if w := d.workload("deaf"); w.Running {
		t.Fatalf("deaf runs after stop")
	}
	d.mustFail("not running", "stop", "deaf")
}

// TestLogRotation: a workload's log that outgrows --log-max-size is
// copied to LOG.1 and emptied, --log-max-files bounds the copies, and
// logs --follow goes on across every rotation: each line once, in order.
func TestLogRotation(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "--name", "chatty", "--log-max-size", "8KiB", "--log-max-files", "2", "--",
		"sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.002; done")
	var followed strings.Builder
	fcmd := exec.Command(bins.ckptctl, "--socket", d.socket, "logs", "--follow", "chatty")
	fcmd.Stdout = &followed
	if err := fcmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fcmd.Wait() }()
	defer fcmd.Process.Kill()
	logDir := filepath.Join(d.root, "workloads", "chatty")
	rotations := 0
	var last string
	waitFor(t, "three rotations", func() bool {
		data, err := os.ReadFile(filepath.Join(logDir, "output.log.1"))
		if err == nil && string(data[:min(len(data), 16)]) != last {
			last = string(data[:min(len(data), 16)])
			rotations++
		}
		return rotations >= 3
	})
	if _, err := os.Stat(filepath.Join(logDir, "output.log.2")); !os.IsNotExist(err) {
		t.Errorf("--log-max-files 2 kept a second old log: %v", err)
	}
	d.must("kill", "chatty")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs --follow: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs --follow did not end with its workload")
	}
	ns := nums(followed.String(), "line")
	if len(ns) == 0 || ns[0] != 1 {
		t.Fatalf("logs --follow did not start at the first line: %v...", ns[:min(5, len(ns))])
	}
	lost := 0
	for i := 1; i < len(ns); i++ {
		switch {
		case ns[i] <= ns[i-1]:
			t.Fatalf("logs --follow repeated or reordered: line %d after %d", ns[i], ns[i-1])
		case ns[i] > ns[i-1]+1:
			lost += ns[i] - ns[i-1] - 1
		}
	}
	t.Logf("followed %d lines across %d+ rotations, %d lost in copy-and-truncate windows", len(ns), rotations, lost)
	if lost > 2*rotations+2 {
		t.Fatalf("logs --follow lost %d lines across %d rotations", lost, rotations)
	}
}

// TestRunFrom: run --from starts a new workload from a checkpoint: its
// own name, network address and identity in ps, the checkpoint's state.
func TestRunFrom(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("cold", 8)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	c := d.create("cold", "--leave-running", "--name", "warmed")
	out := d.must("run", "--from", "warmed", "--name", "warm")
	if !strings.Contains(out, "warm running as pid") || !strings.Contains(out, "from warmed") {
		t.Fatalf("run --from: %s", out)
	}
	x := d.workload("warm")
	if !x.Running || x.RestoredFrom != c.ID || x.IP == "" || x.IP == d.workload("cold").IP {
		t.Fatalf("the warm start: %+v (original at %s)", x, d.workload("cold").IP)
	}
	continues(t, before, loadStatus(t, x.Ref.PID, x.Ref.LogPath))
	d.mustFail("give no command", "run", "--from", "warmed", "--name", "again", "--", "sleep", "1")
	d.must("kill", "warm")
	d.must("kill", "cold")
}

// cgroupOf is pid's cgroup path in a v1 controller.
func cgroupOf(t *testing.T, pid int, ctrl string) string {
	t.Helper()
	for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/cgroup", pid)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), ctrl) {
			return parts[2]
		}
	}
	t.Fatalf("pid %d has no %s cgroup", pid, ctrl)
	return ""
}

// limitsOf reads a workload's memory limit and CPU quota.
func limitsOf(t *testing.T, pid int) (memory, quota string) {
	t.Helper()
	mem := filepath.Join("/sys/fs/cgroup/memory", cgroupOf(t, pid, "memory"), "memory.limit_in_bytes")
	cpu := filepath.Join("/sys/fs/cgroup/cpu", cgroupOf(t, pid, "cpu"), "cpu.cfs_quota_us")
	return strings.TrimSpace(readFile(mem)), strings.TrimSpace(readFile(cpu))
}

// TestLimits: --memory and --cpus put a workload in cgroups of its own
// that bound it (one that needs more memory is killed), and a restore, in
// place or as a copy, gets the same bounds in cgroups of its own.
func TestLimits(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Fatalf("this test reads cgroup v1's memory controller, absent here: %v", err)
	}
	d := startDaemon(t)
	t.Cleanup(func() { removeCgroups(t, d) })
	d.must("run", "--name", "bounded", "--memory", "64MiB", "--cpus", "0.5", "--", bins.memload, "--mib", "16")
	w := d.workload("bounded")
	waitFor(t, "bounded ready", func() bool { return strings.Contains(readFile(w.Ref.LogPath), "ready") })
	want := func(pid int, name string) {
		t.Helper()
		if mem, quota := limitsOf(t, pid); mem != strconv.Itoa(64<<20) || quota != "50000" {
			t.Fatalf("%s: memory limit %s, CPU quota %s; want 64 MiB and 50000", name, mem, quota)
		}
		if cg := cgroupOf(t, pid, "memory"); !strings.HasSuffix(cg, "/"+name) {
			t.Fatalf("%s is in memory cgroup %s, not its own", name, cg)
		}
	}
	want(w.Ref.PID, "bounded")
	d.create("bounded", "--leave-running", "--name", "b1")
	d.must("restore", "b1", "--name", "twin")
	want(d.workload("twin").Ref.PID, "twin")
	d.must("kill", "twin")
	d.create("bounded", "--name", "b2")
	d.must("restore", "b2")
	want(d.workload("bounded").Ref.PID, "bounded")
	d.must("kill", "bounded")

	// memload touches all its memory: 96 MiB in a 64 MiB bound is killed.
	if _, stderr, err := d.ctl("run", "--name", "greedy", "--memory", "64MiB", "--", bins.memload, "--mib", "96"); err == nil {
		waitFor(t, "the greedy workload killed", func() bool { return strings.Contains(d.workload("greedy").Exit, "SIGKILL") })
	} else if !strings.Contains(stderr, "SIGKILL") {
		t.Fatalf("run greedy: %v: %s", err, stderr)
	}
	d.mustFail("at least 6 MiB", "run", "--name", "tiny", "--memory", "1KiB", "--", "sleep", "1")
	// Forgotten, an ended workload's cgroups go.
	d.must("ps", "--prune")
	for _, ctrl := range []string{"memory", "cpu"} {
		if e, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctrl, cgroupBase(t, ctrl), freezer.NameFor(d.root))); len(e) > 0 {
			for _, x := range e {
				if x.IsDir() {
					t.Errorf("ps --prune left the %s cgroup %s", ctrl, x.Name())
				}
			}
		}
	}
}

// cgroupBase is this process's cgroup in ctrl: ckptd's, which it makes
// workloads' cgroups under.
func cgroupBase(t *testing.T, ctrl string) string { return cgroupOf(t, os.Getpid(), ctrl) }

// removeCgroups removes what d's ckptd made for workloads' limits, deepest
// first (a test that failed leaves them).
func removeCgroups(t *testing.T, d *daemon) {
	for _, ctrl := range []string{"memory", "cpu"} {
		base := filepath.Join("/sys/fs/cgroup", ctrl, cgroupBase(t, ctrl), freezer.NameFor(d.root))
		e, _ := os.ReadDir(base)
		for _, x := range e {
			if x.IsDir() {
				os.Remove(filepath.Join(base, x.Name()))
			}
		}
		if err := os.Remove(base); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove %s: %v", base, err)
		}
	}
}

// starts counts a workload's "start" lines.
func starts(d *daemon, name string) int { return strings.Count(d.must("logs", name), "start\n") }

// TestRestartPolicy: --restart on-failure:N restarts a failing workload N
// times, always restarts one that exits 0 until it is stopped, and
// neither stop nor a checkpoint that ends a workload restarts it; with
// --restart-from-checkpoint a crashed workload comes back from its newest
// checkpoint, memory and all.
func TestRestartPolicy(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "--name", "flaky", "--restart", "on-failure:2", "--", "sh", "-c", "echo start; exit 3")
	waitFor(t, "two restarts", func() bool { return starts(d, "flaky") == 3 })
	time.Sleep(2 * time.Second)
	if n := starts(d, "flaky"); n != 3 || !strings.Contains(d.workload("flaky").Exit, "exited 3") {
		t.Fatalf("on-failure:2 started it %d times, exit %q", n, d.workload("flaky").Exit)
	}

	d.must("run", "--name", "steady", "--restart", "always", "--", "sh", "-c", "echo start; sleep 1")
	waitFor(t, "a clean exit restarted", func() bool { return starts(d, "steady") >= 3 })
	waitFor(t, "steady running", func() bool { return d.workload("steady").Running })
	d.must("stop", "steady", "--time", "1")
	n := starts(d, "steady")
	time.Sleep(2 * time.Second)
	if m := starts(d, "steady"); m != n {
		t.Fatalf("a stopped workload was restarted: %d starts, then %d", n, m)
	}

	d.must("run", "--name", "crash2", "--restart", "always", "--restart-from-checkpoint", "--", bins.memload, "--mib", "8")
	w := d.workload("crash2")
	waitFor(t, "crash2 ready", func() bool { return strings.Contains(readFile(w.Ref.LogPath), "ready") })
	d.create("crash2", "--name", "c2") // a checkpoint that ends it: no restart
	time.Sleep(2 * time.Second)
	if x := d.workload("crash2"); x.Running {
		t.Fatalf("a checkpoint's end restarted it: %+v", x)
	}
	d.must("restore", "c2")
	x := d.workload("crash2")
	before := loadStatus(t, x.Ref.PID, x.Ref.LogPath)
	d.create("crash2", "--leave-running", "--name", "c3")
	syscall.Kill(x.Ref.PID, syscall.SIGKILL) // it dies, not by ckptd's hand (an OOM kill, say)
	waitFor(t, "crash2 back from its checkpoint", func() bool {
		y := d.workload("crash2")
		return y.Running && y.Ref.PID != x.Ref.PID
	})
	y := d.workload("crash2")
	if y.RestoredFrom == "" {
		t.Fatalf("crash2 came back, but not from a checkpoint: %+v", y)
	}
	continues(t, before, loadStatus(t, y.Ref.PID, y.Ref.LogPath))
	d.must("kill", "crash2")
}
