package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// campaignRuns is how many kills each operation gets: a few in make test,
// CKPTD_CAMPAIGN_RUNS (make faults: 50) for the published figures.
func campaignRuns(t *testing.T) int {
	if s := os.Getenv("CKPTD_CAMPAIGN_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("CKPTD_CAMPAIGN_RUNS=%q", s)
		}
		return n
	}
	return 4
}

// campaignRow is one operation's line of the campaign's table.
type campaignRow struct {
	runs, lostToCRIU int
	completed        int            // the operation ended before the kill landed
	points           map[string]int // where the kills landed
	violations       []string
}

// TestCrashPointCampaign kills ckptd with SIGKILL at a random moment of
// each operation, restarts it, and checks the invariants: no partial
// checkpoint listed, every listed checkpoint verifies, the newest restores
// with the memory the workload had, no target left frozen, nothing but
// logs left in staging and work dirs, and a target either runs as before
// or its checkpoint exists. It prints runs, kill points reached and
// violations (which fail the test) per operation.
func TestCrashPointCampaign(t *testing.T) {
	d := startDaemon(t)
	runs := campaignRuns(t)
	w := d.runLoadIn(t.TempDir(), "camp", 16)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("camp", "--leave-running", "--name", "base")
	archive := filepath.Join(t.TempDir(), "base.tar.zst")
	d.must("export", "base", archive)
	host := startHostLoad(t)
	// Scheduled rounds set a schedule, kill ckptd wherever its ticks,
	// seals and retention happen to be, and remove it once restarted.
	sched := d.runLoadIn(t.TempDir(), "sched", 16)
	rows := map[string]*campaignRow{}
	ops := []string{"create workload", "create workload --leave-running", "create process", "restore copy", "rm", relinkOp, "import", scheduledOp}
	for round := range runs * len(ops) {
		op := ops[round%len(ops)]
		row := rows[op]
		if row == nil {
			row = &campaignRow{points: map[string]int{}}
			rows[op] = row
		}
		row.runs++
		if !alive(w.Ref.PID) { // the last create took it: bring it back
			w = d.runLoadIn(t.TempDir(), fmt.Sprintf("camp%d", round), 16)
			hash = loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
		}
		if !alive(host.pid) {
			host = startHostLoad(t)
		}
		args := campaignArgs(d, op, w, host.pid, round)
		if op == "import" {
			args = []string{"import", archive, "--name", fmt.Sprintf("imported%d", round)}
		}
		listedBefore := len(d.checkpoints())
		window := 400
		var wait func() (string, error)
		if op == scheduledOp {
			// The kills land in its ticks, not in the request that set it:
			// a kill before that request is answered leaves no schedule,
			// as it should (CI once killed one there, run 23).
			d.must(args...)
			wait = func() (string, error) { return "", nil }
			window = 2500 // two ticks
		} else {
			wait = d.startCtl(args...)
		}
		time.Sleep(time.Duration(rand.IntN(window)) * time.Millisecond)
		target := w.Ref.PID
		if op == scheduledOp {
			target = sched.Ref.PID
		}
		row.points[killPoint(d, op, target, host.pid)]++
		d.kill9()
		wait()
		d.start()
		if op == scheduledOp {
			row.violations = append(row.violations, endSchedule(t, d, round)...)
		}
		bad, lost := d.campaignInvariants(t, op, w, hash, host.pid, sched.Ref.PID, listedBefore)
		if lost {
			row.lostToCRIU++
		}
		for _, b := range bad {
			row.violations = append(row.violations, fmt.Sprintf("run %d: %s", round, b))
		}
		d.endCopies(w.Ref.PID, sched.Ref.PID)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-32s %5s %10s %11s  %s\n", "OPERATION (ckptd killed)", "RUNS", "VIOLATIONS", "LOST(CRIU)", "KILL POINTS REACHED")
	for _, op := range ops {
		r := rows[op]
		fmt.Fprintf(&b, "%-32s %5d %10d %11d  %s\n", op, r.runs, len(r.violations), r.lostToCRIU, r.killPoints())
		r.fail(t, op)
	}
	t.Log(b.String())
}

// killPoints says where the row's kills landed, sorted.
func (r *campaignRow) killPoints() string {
	var pts []string
	for p, n := range r.points {
		pts = append(pts, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(pts)
	return strings.Join(pts, ", ")
}

// fail reports each of the row's violations as an error of t.
func (r *campaignRow) fail(t *testing.T, op string) {
	t.Helper()
	for _, v := range r.violations {
		t.Errorf("%s: %s", op, v)
	}
}

// endSchedule checks that the schedule outlived the kill and that its
// retention catches up after it: once a run completes after the restart,
// keep-last 1 leaves at most that run's checkpoint and one a kill kept
// (a kill between a seal and its retention, or during a fold, leaves an
// extra checkpoint until the next run). It then removes the schedule
// (which waits for a run in flight), so that the invariants see a quiet
// daemon.
func endSchedule(t *testing.T, d *daemon, round int) (bad []string) {
	s := d.schedules()
	if len(s) != 1 {
		return []string{fmt.Sprintf("run %d: the schedule did not outlive the kill: %+v", round, s)}
	}
	waitRuns(t, d, s[0].Key, s[0].Runs+1)
	if _, stderr, err := d.ctl("schedule", "rm", "sched"); err != nil {
		bad = append(bad, fmt.Sprintf("run %d: schedule rm: %s", round, stderr))
	}
	if scheduled, _ := d.scheduled(); len(scheduled) > 2 {
		bad = append(bad, fmt.Sprintf("run %d: retention keep-last 1 left %d scheduled checkpoints", round, len(scheduled)))
	}
	return bad
}

// relinkOp removes a checkpoint in the middle of a chain: its child takes
// the pages it read from it (a fold) before it goes.
const relinkOp = "rm --relink (fold)"

// scheduledOp is the campaign's operation whose kills land in a running
// schedule (keep-last 1): its tick, dump, seal or retention.
const scheduledOp = "scheduled, keep-last 1"

func campaignArgs(d *daemon, op string, w target, hostPID, round int) []string {
	switch op {
	case "create workload":
		return []string{"create", w.Ref.Name}
	case "create workload --leave-running":
		return []string{"create", w.Ref.Name, "--leave-running"}
	case "create process":
		return []string{"create", strconv.Itoa(hostPID), "--leave-running"}
	case "restore copy":
		return []string{"restore", "base", "--name", fmt.Sprintf("copy%d", round)}
	case scheduledOp:
		return []string{"schedule", "sched", "--every", "1s", "--keep-last", "1"}
	}
	// rm: the newest checkpoint without descendants, else the base.
	cs := d.checkpoints()
	parents := map[string]bool{}
	for _, c := range cs {
		parents[c.Parent] = true
	}
	if op == relinkOp { // the oldest with both a parent and children
		for _, c := range cs {
			if parents[c.ID] && c.Parent != "" && c.Name != "base" {
				return []string{"rm", "--relink", c.Name}
			}
		}
	}
	for i := len(cs) - 1; i >= 0; i-- {
		if !parents[cs[i].ID] && cs[i].Name != "base" {
			return []string{"rm", cs[i].Name}
		}
	}
	return []string{"rm", "no-such-checkpoint"}
}

// killPoint names where the operation was when the kill landed.
func killPoint(d *daemon, op string, pid, hostPID int) string {
	criu := criuChild(d.cmd.Process.Pid) > 0
	switch {
	case op == "create process" && traced(hostPID), strings.HasPrefix(op, "create workload") && traced(pid):
		if stagedPages(d.root) {
			return "frozen, pages written"
		}
		return "frozen"
	case criu:
		return "CRIU running"
	case strings.HasPrefix(op, "create") || op == "restore copy":
		return "before or after CRIU"
	case op == scheduledOp && traced(pid):
		return "frozen"
	case op == scheduledOp:
		return "between dumps (tick, seal, retention)"
	case op == relinkOp && stagedPages(d.root):
		return "folding"
	case op == "import" && stagedPages(d.root):
		return "archive being staged"
	}
	return "during or after the request"
}

// campaignInvariants checks a restarted ckptd after a kill. lost reports a
// workload that CRIU's injected code took with it (see assertClean),
// which is CRIU's loss, counted apart.
func (d *daemon) campaignInvariants(t *testing.T, op string, w target, hash string, hostPID, schedPID, listedBefore int) (bad []string, lost bool) {
	t.Helper()
	cs, bad := d.storeInvariants(t)
	if l := leftovers(t, d); len(l) != 0 {
		bad = append(bad, fmt.Sprintf("work dirs keep images: %v", l))
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "criu")); len(left) != 0 {
		bad = append(bad, fmt.Sprintf("CRIU records left: %d", len(left)))
	}
	pid := w.Ref.PID
	switch op {
	case "create process":
		pid = hostPID
	case scheduledOp:
		pid = schedPID
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) && traced(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case alive(pid) && traced(pid):
		bad = append(bad, fmt.Sprintf("target %d left frozen: %s", pid, threadStates(pid)))
	case !alive(pid) && op == scheduledOp:
		bad = append(bad, "the scheduled workload is gone: --leave-running must leave it running")
	case !alive(pid) && op == "create workload":
		if len(cs) <= listedBefore { // killed by the dump: its checkpoint must exist
			bad = append(bad, "the workload is gone and no new checkpoint exists")
		}
	case !alive(pid):
		lost = strings.Contains(readFile(w.Ref.LogPath), "SIG") || op == "create process"
		if !lost {
			bad = append(bad, fmt.Sprintf("target %d is gone after a kill during %q", pid, op))
		}
	}
	// The newest checkpoint of the workload restores with its memory.
	for i := len(cs) - 1; i >= 0; i-- {
		if !strings.HasPrefix(cs[i].Name, w.Ref.Name+"-") && cs[i].Name != "base" {
			continue
		}
		_, stderr, err := d.ctl("restore", cs[i].Name, "--name", "probe")
		if err != nil {
			bad = append(bad, fmt.Sprintf("newest checkpoint %s does not restore: %s", cs[i].Name, stderr))
			break
		}
		p := d.workload("probe")
		if st := loadStatus(t, p.Ref.PID, p.Ref.LogPath); st.Hash != hash {
			bad = append(bad, fmt.Sprintf("%s restored with memory %s, the workload had %s", cs[i].Name, st.Hash, hash))
		}
		d.must("kill", "probe")
		break
	}
	return bad, lost
}

// storeInvariants checks a restarted ckptd's store after a kill: no CRIU
// left, every listed checkpoint verifies, staging is empty. It returns the
// listed checkpoints and what is wrong.
func (d *daemon) storeInvariants(t *testing.T) (cs []checkpoint, bad []string) {
	t.Helper()
	d.criuGone(t)
	cs = d.checkpoints()
	for _, c := range cs {
		if _, stderr, err := d.ctl("verify", c.Name); err != nil {
			bad = append(bad, fmt.Sprintf("listed checkpoint %s does not verify: %s", c.Name, stderr))
		}
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		bad = append(bad, fmt.Sprintf("staging keeps %d entries after start-up", len(left)))
	}
	return cs, bad
}

// endCopies kills every running workload but those in keep: copies a
// restore made, probes, and copies a dead daemon restored (nobody's child
// now).
func (d *daemon) endCopies(keep ...int) {
	for _, tg := range d.ps() {
		if tg.Running && tg.Ref.Kind == "workload" && !slices.Contains(keep, tg.Ref.PID) {
			syscall.Kill(tg.Ref.PID, syscall.SIGKILL)
			for deadline := time.Now().Add(5 * time.Second); alive(tg.Ref.PID) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

type hostLoad struct{ pid int }

// startHostLoad starts a memload ckptd did not launch, checkpointed by PID.
func startHostLoad(t *testing.T) hostLoad {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "host.log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := exec.Command(bins.memload, "--mib", "16")
	p.Dir = filepath.Dir(logPath)
	p.Stdout, p.Stderr = out, out
	p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	go p.Wait()
	t.Cleanup(func() { syscall.Kill(p.Process.Pid, syscall.SIGKILL) })
	waitFor(t, "host memload ready", func() bool { return strings.Contains(readFile(logPath), "ready") })
	return hostLoad{pid: p.Process.Pid}
}
