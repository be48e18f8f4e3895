package integration

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The defects a new user found (issue 33), each driven as they met it.

// TestKillOnlyWhatCkptdStarted: a refused create leaves no target behind,
// so kill never signals a process ckptd did not launch or restore: not a
// host process, not one it only checkpointed, not ckptd itself.
func TestKillOnlyWhatCkptdStarted(t *testing.T) {
	d := startDaemon(t)
	sleep := exec.Command("sleep", "1000") // not a session leader: create refuses it
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	pid := strconv.Itoa(sleep.Process.Pid)
	self := strconv.Itoa(d.cmd.Process.Pid)

	d.mustFail("not found", "kill", pid)
	d.mustFail("session leader", "create", pid)
	d.mustFail("ckptd itself", "create", self)
	for _, tg := range d.ps() {
		if p := strconv.Itoa(tg.Ref.PID); p == pid || p == self {
			t.Errorf("a refused create left a target: %+v", tg)
		}
	}
	d.mustFail("launched or restored", "kill", pid)
	d.mustFail("launched or restored", "kill", self)

	// Checkpointed but not started by ckptd: listed, but not ckptd's to end.
	host := exec.Command(bins.memload, "--mib", "4")
	host.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })
	hostPID := strconv.Itoa(host.Process.Pid)
	waitFor(t, "memload to start", func() bool { return alive(host.Process.Pid) })
	d.create(hostPID, "--leave-running")
	if out := d.must("ps"); !strings.Contains(out, "pid:"+hostPID) {
		t.Errorf("ps does not list the checkpointed process:\n%s", out)
	}
	d.mustFail("launched or restored", "kill", hostPID)

	for _, p := range []*exec.Cmd{sleep, host} {
		if !alive(p.Process.Pid) {
			t.Errorf("pid %d was killed", p.Process.Pid)
		}
	}
	if d.cmd.ProcessState != nil || !alive(d.cmd.Process.Pid) {
		t.Fatal("ckptd was killed")
	}
}

// TestNewUserDefects: names, lineage and commands as a new user met them,
// each a subtest of one daemon.
func TestNewUserDefects(t *testing.T) {
	startDaemon(t).subtests(t, []subtest{
		{"digit names", digitNames},
		{"run -t without a terminal", runTTYWithoutTerminal},
		{"inspect a child", inspectChild},
		{"names only grow", namesOnlyGrow},
		{"latest is the last arrived", latestArrived},
	})
}

// subtest is one part of a test that shares its daemon with the others.
type subtest struct {
	name string
	run  func(t *testing.T, d *daemon)
}

// subtests runs each of ts as a subtest of t on d, so that one that fails
// does not stop the others.
func (d *daemon) subtests(t *testing.T, ts []subtest) {
	for _, st := range ts {
		t.Run(st.name, func(t *testing.T) {
			d.t = t
			defer func() { d.t = t }()
			st.run(t, d)
		})
	}
}

// An all-digit workload name would be read back as a PID.
func digitNames(t *testing.T, d *daemon) {
	d.mustFail("all digits", "run", "--name", "123", "--", "sleep", "100")
	for _, tg := range d.ps() {
		if tg.Ref.Name == "123" {
			t.Errorf("a refused run left %+v", tg)
		}
	}
}

// run -t with no terminal to attach to is refused, not left hanging.
func runTTYWithoutTerminal(t *testing.T, d *daemon) {
	errOut, err := d.startCtl("run", "-t", "--name", "tt", "--", "sleep", "100")()
	if err == nil || !strings.Contains(errOut, "needs a terminal") {
		t.Errorf("run -t without a terminal: %v, %q; want one line saying it needs a terminal", err, errOut)
	}
	for _, tg := range d.ps() {
		if tg.Ref.Name == "tt" {
			t.Errorf("a refused run left %+v", tg)
		}
	}
}

// inspect shows the command of a checkpoint that has a parent.
func inspectChild(t *testing.T, d *daemon) {
	d.runLoad("insp", 8)
	c1 := d.create("insp", "--leave-running")
	c2 := d.create("insp", "--leave-running")
	if c2.Parent != c1.ID {
		t.Fatalf("second checkpoint's parent %q, want %q", c2.Parent, c1.ID)
	}
	for _, c := range []checkpoint{c1, c2} {
		var in struct {
			Processes []struct {
				Command []string `json:"command"`
			} `json:"processes"`
		}
		if err := json.Unmarshal([]byte(d.must("inspect", "-o", "json", c.Name)), &in); err != nil {
			t.Fatal(err)
		}
		if len(in.Processes) == 0 || len(in.Processes[0].Command) == 0 || in.Processes[0].Command[0] != bins.memload {
			t.Errorf("inspect %s: processes %+v, want the first running %s", c.Name, in.Processes, bins.memload)
		}
	}
}

// Automatic names only grow: a removed one's number is not reused.
func namesOnlyGrow(t *testing.T, d *daemon) {
	d.runLoad("names", 4)
	if c := d.create("names", "--leave-running"); c.Name != "names-1" {
		t.Fatalf("first automatic name %q", c.Name)
	}
	d.must("rm", "names-1")
	if c := d.create("names", "--leave-running"); c.Name != "names-2" {
		t.Errorf("after rm names-1 the next name is %q, want names-2", c.Name)
	}
}

// --latest is the checkpoint ckptd took or received last: an import of an
// older checkpoint, made after the newest was taken, is it.
func latestArrived(t *testing.T, d *daemon) {
	dir := t.TempDir()
	d.runLoad("lat", 4)
	l1 := d.create("lat", "--leave-running")
	d.must("export", l1.Name, filepath.Join(dir, "l1.tar.zst"))
	d.create("lat", "--leave-running")
	d.must("import", filepath.Join(dir, "l1.tar.zst"), "--name", "latcopy")
	d.must("restore", "--latest", "lat", "--name", "latx")
	var imported string
	for _, c := range d.checkpoints() {
		if c.Name == "latcopy" {
			imported = c.ID
		}
	}
	for _, tg := range d.ps() {
		if tg.Ref.Name == "latx" && tg.RestoredFrom != imported {
			t.Errorf("restore --latest restored %s, want the import %s", tg.RestoredFrom, imported)
		}
	}
}

// TestStopEndsWatchingClients: a stopping ckptd ends the streams that only
// watch (logs -f, events, attach) at once, telling their clients, rather
// than waiting its whole grace for them while a new ckptd cannot start.
func TestStopEndsWatchingClients(t *testing.T) {
	d := startDaemonWith(t, "--shutdown-grace", "10m")
	d.runLoad("watched", 4)
	d.must("run", "-t", "-d", "--name", "tw", "--", "sh", "-c", "while :; do sleep 1; done")
	clients := map[string]func() (string, error){
		"ckptd is stopping":     d.startCtl("logs", "-f", "watched"),
		"ckptd is stopping ":    d.startCtl("events"),
		"session keeps running": d.startCtl("attach", "--no-stdin", "tw"),
	}
	waitFor(t, "the attached client", func() bool { return strings.Contains(d.must("ps"), "1 attached") })
	time.Sleep(500 * time.Millisecond) // logs -f and events have no such sign; they connected first

	d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(opDeadline):
		d.cmd.Process.Kill()
		<-exited
		t.Fatalf("ckptd still stopping after %s with watching clients (its grace is 10m)", opDeadline)
	}
	for want, wait := range clients {
		errOut, err := wait()
		if lines := strings.Split(strings.TrimSpace(errOut), "\n"); err == nil || len(lines) != 1 || !strings.Contains(lines[0], strings.TrimSpace(want)) {
			t.Errorf("client: %v, stderr %q; want one line containing %q", err, errOut, want)
		}
	}
	d.start()
	if !d.workload("watched").Running || !d.workload("tw").Running {
		t.Errorf("workloads did not outlive the stop: %+v", d.ps())
	}
}
