package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestContainerCrashCampaign kills ckptd with SIGKILL at a random moment
// of container creates (the container stops, or keeps running), restarts
// it, and checks the invariants: the container is never left paused; it
// runs and counts on, or (a create that stops it) its new checkpoint is
// listed and restores it in place; nothing partial is listed and every
// listed checkpoint verifies; no staging leftovers or pause markers.
func TestContainerCrashCampaign(t *testing.T) {
	x, d, logPath := withRunningContainer(t, "camp", counterScript, 2)
	runs := campaignRuns(t)
	ops := []string{"create container", "create container --leave-running", runcKilledOp}
	rows := map[string]*campaignRow{}
	for round := range runs * len(ops) {
		op := ops[round%len(ops)]
		row := rows[op]
		if row == nil {
			row = &campaignRow{points: map[string]int{}}
			rows[op] = row
		}
		row.runs++
		args := []string{"create", "ctr:camp"}
		if strings.HasSuffix(op, "--leave-running") {
			args = append(args, "--leave-running")
		}
		before := len(d.checkpoints())
		wait := d.startCtl(args...)
		if op == runcKilledOp {
			row.points[killRunc(x)]++
			wait()
		} else {
			time.Sleep(time.Duration(rand.IntN(700)) * time.Millisecond)
			point := "before the pause or after the commit"
			switch x.status("camp") {
			case "paused":
				point = "container paused"
			case "", "stopped":
				point = "container stopped by the create"
			}
			row.points[point]++
			d.kill9()
			wait()
			d.start()
		}
		bad, restored := containerInvariants(t, x, d, op, logPath, before)
		if restored {
			logPath = filepath.Join(d.root, "containers", "default", "camp", "output.log")
		}
		for _, b := range bad {
			row.violations = append(row.violations, fmt.Sprintf("run %d: %s", round, b))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-36s %5s %10s  %s\n", "OPERATION (ckptd killed)", "RUNS", "VIOLATIONS", "KILL POINTS REACHED")
	for _, op := range ops {
		r := rows[op]
		fmt.Fprintf(&b, "%-36s %5d %10d  %s\n", op, r.runs, len(r.violations), r.killPoints())
		r.fail(t, op)
	}
	t.Log(b.String())
}

// runcKilledOp is a create (that stops the container) whose runc
// checkpoint is killed with SIGKILL; ckptd lives on.
const runcKilledOp = "create container, runc killed"

// killRunc kills the runc checkpoint of x's containerd (found by its
// state directory on the command line) at a random moment of its life,
// and says where the kill landed.
func killRunc(x *ctrd) string {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range runcCheckpoints(x.in.Dir) {
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			criuRunning := len(criuProcesses()) > 0
			if syscall.Kill(pid, syscall.SIGKILL) != nil {
				return "runc ended before the kill"
			}
			if criuRunning {
				return "runc killed, its CRIU running"
			}
			return "runc killed"
		}
		time.Sleep(time.Millisecond)
	}
	return "runc never seen"
}

// runcCheckpoints lists the runc checkpoint processes whose command line
// names dir.
func runcCheckpoints(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		argv := strings.Split(readFile(fmt.Sprintf("/proc/%d/cmdline", pid)), "\x00")
		if filepath.Base(argv[0]) == "runc" && slices.Contains(argv, "checkpoint") && strings.Contains(strings.Join(argv, " "), dir) {
			out = append(out, pid)
		}
	}
	return out
}

// containerInvariants checks a restarted ckptd after a kill during a
// container create. restored reports that the container was brought back
// from its new checkpoint (its output now goes to ckptd's log for it).
func containerInvariants(t *testing.T, x *ctrd, d *daemon, op, logPath string, listedBefore int) (bad []string, restored bool) {
	t.Helper()
	cs, bad := d.storeInvariants(t)
	if markers, _ := filepath.Glob(filepath.Join(d.root, "dumps", "*", "paused.json")); len(markers) != 0 {
		bad = append(bad, fmt.Sprintf("pause markers left: %v", markers))
	}
	switch st := x.status("camp"); {
	case st == "running":
		if !counting(t, logPath) {
			bad = append(bad, "the container runs but does not count")
		}
	case st == "paused":
		bad = append(bad, "the container is left paused")
	case op == "create container --leave-running":
		bad = append(bad, fmt.Sprintf("a --leave-running create left the container %q", st))
	case len(cs) <= listedBefore:
		bad = append(bad, fmt.Sprintf("the container is %q and no new checkpoint exists", st))
	default: // stopped by a create whose checkpoint exists: bring it back
		newest := cs[len(cs)-1].Name
		if _, stderr, err := d.ctl("restore", newest); err != nil {
			bad = append(bad, fmt.Sprintf("the create's checkpoint %s does not restore: %s", newest, stderr))
			return bad, false
		}
		restored = true
		if !counting(t, filepath.Join(d.root, "containers", "default", "camp", "output.log")) {
			bad = append(bad, fmt.Sprintf("restored from %s, the container does not count", newest))
		}
	}
	return bad, restored
}
