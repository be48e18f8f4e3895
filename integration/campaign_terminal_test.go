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

	"github.com/creack/pty"

	"github.com/ckptd/ckptd/term"
)

// TestTerminalCrashCampaign kills ckptd with SIGKILL at a random moment of
// each terminal operation (run -t, checkpoints of a terminal session, a
// copy's restore onto a new terminal, a shell job's restore under its new
// session's holder), restarts it, and checks, besides the store's
// invariants: every terminal holder serves a running target ckptd lists
// (none is left over from an operation the kill cut short), every running
// terminal target's holder answers, nothing is left frozen, and the
// newest checkpoint of the session restores with x = 41.
func TestTerminalCrashCampaign(t *testing.T) {
	d := startDaemon(t)
	runs := campaignRuns(t)
	job, _ := shellJob(t, d) // checkpoint job1; the job is gone
	repl := startRepl(t, d, "tcamp")
	d.create("tcamp", "--leave-running", "--name", "tbase")
	ops := []string{"run", "run -t", "create --leave-running", "create", "restore copy", "restore shell job"}
	rows := map[string]*campaignRow{}
	for round := range runs * len(ops) {
		op := ops[round%len(ops)]
		row := rows[op]
		if row == nil {
			row = &campaignRow{points: map[string]int{}}
			rows[op] = row
		}
		row.runs++
		if !alive(repl) {
			repl = startRepl(t, d, fmt.Sprintf("tcamp%d", round))
		}
		// A run's command is told apart by its argument (see unrecorded).
		sleep := []string{"/bin/sleep", strconv.Itoa(100000 + round)}
		args := map[string][]string{
			"run":                    append([]string{"run", "--name", fmt.Sprintf("trun%d", round), "--"}, sleep...),
			"run -t":                 append([]string{"run", "-t", "-d", "--name", fmt.Sprintf("trun%d", round), "--"}, sleep...),
			"create --leave-running": {"create", d.nameOf(repl), "--leave-running", "--name", fmt.Sprintf("tc%d", round)},
			"create":                 {"create", d.nameOf(repl), "--name", fmt.Sprintf("tc%d", round)},
			"restore copy":           {"restore", "tbase", "--name", fmt.Sprintf("tcopy%d", round)},
			"restore shell job":      {"restore", "job1"},
		}[op]
		wait := d.startCtl(args...)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		point := "before or after CRIU"
		if criuChild(d.cmd.Process.Pid) > 0 || len(criuProcesses()) > 0 {
			point = "CRIU running"
		} else if traced(repl) {
			point = "frozen"
		}
		row.points[point]++
		d.kill9()
		if _, err := wait(); err == nil {
			row.completed++
		}
		d.start()
		bad := d.terminalInvariants(t, op, repl, job)
		if strings.HasPrefix(op, "run") {
			bad = append(bad, d.unrecorded(sleep)...)
		}
		for _, b := range bad {
			row.violations = append(row.violations, fmt.Sprintf("run %d: %s", round, b))
		}
		d.endCopies(repl)
		syscall.Kill(job, syscall.SIGKILL)
		waitFor(t, "the restored shell job to end", func() bool { return !alive(job) })
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-26s %5s %9s %10s  %s\n", "OPERATION (ckptd killed)", "RUNS", "COMPLETED", "VIOLATIONS", "KILL POINTS REACHED")
	for _, op := range ops {
		r := rows[op]
		fmt.Fprintf(&b, "%-26s %5d %9d %10d  %s\n", op, r.runs, r.completed, len(r.violations), r.killPoints())
		r.fail(t, op)
	}
	t.Log(b.String())
}

// unrecorded reports processes running argv that ckptd does not list as
// running targets: a run cut short must leave none.
func (d *daemon) unrecorded(argv []string) (bad []string) {
	listed := map[int]bool{}
	for _, tg := range d.ps() {
		listed[tg.Ref.PID] = tg.Running
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && alive(pid) && readFile(fmt.Sprintf("/proc/%d/cmdline", pid)) == strings.Join(argv, "\x00")+"\x00" && !listed[pid] {
			bad = append(bad, fmt.Sprintf("%v runs as %d, and ckptd does not list it", argv, pid))
		}
	}
	return bad
}

// startRepl runs python3 -q on a terminal as name, sets x = 41 in it and
// detaches; it returns the workload's PID.
func startRepl(t *testing.T, d *daemon, name string) int {
	t.Helper()
	d.must("run", "-t", "-d", "--name", name, "--", "/usr/bin/python3", "-q")
	c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", name)
	c.send("x = 41\r")
	c.ask("set", "x", "41")
	c.detach(name)
	return d.workload(name).Ref.PID
}

// nameOf is the name of the workload whose PID is pid.
func (d *daemon) nameOf(pid int) string {
	for _, tg := range d.ps() {
		if tg.Ref.PID == pid {
			return tg.Ref.Name
		}
	}
	d.t.Fatalf("no target has PID %d", pid)
	return ""
}

// terminalInvariants checks a restarted ckptd after a kill during op.
func (d *daemon) terminalInvariants(t *testing.T, op string, repl, job int) (bad []string) {
	t.Helper()
	cs, bad := d.storeInvariants(t)
	if l := leftovers(t, d); len(l) != 0 {
		bad = append(bad, fmt.Sprintf("work dirs keep images: %v", l))
	}
	for deadline := time.Now().Add(10 * time.Second); alive(repl) && traced(repl) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case alive(repl) && traced(repl):
		bad = append(bad, fmt.Sprintf("the session %d is left frozen: %s", repl, threadStates(repl)))
	case !alive(repl) && op != "create":
		bad = append(bad, fmt.Sprintf("the session %d is gone after a kill during %q", repl, op))
	}
	if alive(job) && !slices.ContainsFunc(d.ps(), func(tg target) bool { return tg.Running && tg.Terminal && tg.Ref.PID == job }) {
		bad = append(bad, fmt.Sprintf("the shell job %d runs, and ckptd does not list it on a terminal", job))
	}
	bad = append(bad, d.holdersMatch()...)
	// The newest checkpoint of the session restores with its variables.
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].Name != "tbase" && !strings.HasPrefix(cs[i].Name, "tc") {
			continue
		}
		if _, stderr, err := d.ctl("restore", cs[i].Name, "--name", "tprobe"); err != nil {
			bad = append(bad, fmt.Sprintf("newest checkpoint %s does not restore: %s", cs[i].Name, stderr))
			break
		}
		c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "tprobe")
		c.ask("probe", "x", "41")
		c.detach("tprobe")
		d.must("kill", "tprobe")
		break
	}
	return bad
}

// holdersMatch checks the terminal holders under d's state root against
// the running terminal targets: each serves one, and each has one that
// answers. A holder whose session is ending is given a few seconds.
func (d *daemon) holdersMatch() (bad []string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		bad = nil
		want := map[string]int{}
		for _, tg := range d.ps() {
			if !tg.Running || !tg.Terminal {
				continue
			}
			name := tg.Ref.Name
			if tg.Ref.Kind == "process" {
				name = fmt.Sprintf("pid/%d", tg.Ref.PID)
			}
			sock := d.terminalSocket(name)
			want[sock] = tg.Ref.PID
			if _, err := term.Query(sock); err != nil {
				bad = append(bad, fmt.Sprintf("target %d runs on a terminal whose holder does not answer: %v", tg.Ref.PID, err))
			}
		}
		for pid, sock := range d.holders() {
			if _, ok := want[sock]; !ok {
				bad = append(bad, fmt.Sprintf("holder %d (%s) serves no running target: %s", pid, sock, readFile(fmt.Sprintf("/proc/%d/cmdline", pid))))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			return bad
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminalSocket is where the holder of session name listens (see
// store.Layout.TerminalSocket).
func (d *daemon) terminalSocket(name string) string {
	if pid, ok := strings.CutPrefix(name, "pid/"); ok {
		return filepath.Join(d.root, "terminals", pid, "tty.sock")
	}
	return filepath.Join(d.root, "workloads", name, "tty.sock")
}

// holders are the running terminal holders whose socket is under d's
// state root, by PID.
func (d *daemon) holders() map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != bins.term {
			continue
		}
		args := strings.Split(readFile(fmt.Sprintf("/proc/%d/cmdline", pid)), "\x00")
		if i := slices.Index(args, "--socket"); i >= 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], d.root+"/") {
			out[pid] = args[i+1]
		}
	}
	return out
}
