package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFriction drives what a Podman user reaches for without reading the
// help (issue 33's friction list), each as a subtest of one daemon.
func TestFriction(t *testing.T) {
	startDaemon(t).subtests(t, []subtest{
		{"signals and ended targets", signalsAndEnded},
		{"json everywhere", jsonEverywhere},
		{"errors that point to the fix", errorsPointToFix},
		{"logs and lists", logsAndLists},
	})
}

// kill -s, an exit kept across a restart, ps --prune.
func signalsAndEnded(t *testing.T, d *daemon) {
	d.must("run", "--name", "trapper", "--", "sh", "-c", `trap "exit 3" TERM; while :; do sleep 0.1; done`)
	d.mustFail("signal", "kill", "-s", "NOPE", "trapper")
	d.must("kill", "-s", "TERM", "trapper")
	waitFor(t, "trapper to exit", func() bool { return !d.workload("trapper").Running })
	if e := d.workload("trapper").Exit; e != "exited 3" {
		t.Errorf("after SIGTERM trapper %q, want exited 3", e)
	}
	d.stop()
	d.start()
	if e := d.workload("trapper").Exit; e != "exited 3" {
		t.Errorf("after a restart trapper %q, want exited 3 as before", e)
	}
	_, errOut, err := d.ctl("ps", "--prune", "-q")
	if err != nil || !strings.Contains(errOut, "forgot trapper") {
		t.Errorf("ps --prune: %v, stderr %q; want it to say it forgot trapper", err, errOut)
	}
	for _, tg := range d.ps() {
		if tg.Ref.Name == "trapper" {
			t.Errorf("pruned target still listed: %+v", tg)
		}
	}
	if _, err := os.Stat(filepath.Join(d.root, "workloads", "trapper")); !os.IsNotExist(err) {
		t.Errorf("pruned workload's directory: %v", err)
	}
}

// -o json answers with objects, errors included, and events' numbers are
// numbers.
func jsonEverywhere(t *testing.T, d *daemon) {
	events := d.followEvents(t)
	d.runLoad("js", 4)
	c := d.create("js", "--leave-running")
	var removed struct {
		Removed []struct{ ID, Name string } `json:"removed"`
	}
	if err := json.Unmarshal([]byte(d.must("rm", "-o", "json", c.Name)), &removed); err != nil || len(removed.Removed) != 1 || removed.Removed[0].Name != c.Name {
		t.Errorf("rm -o json: %+v, %v", removed, err)
	}
	out := d.must("kill", "-o", "json", "js")
	if !json.Valid([]byte(out)) || !strings.Contains(out, "SIGKILL") {
		t.Errorf("kill -o json printed %q", out)
	}
	_, errOut, err := d.ctl("-o", "json", "restore", "nosuch")
	var e struct{ Error string }
	if err == nil || json.Unmarshal([]byte(errOut), &e) != nil || !strings.Contains(e.Error, "not found") {
		t.Errorf("an error under -o json: %v, stderr %q; want a JSON object", err, errOut)
	}
	var check struct {
		Checks []struct{ Name string } `json:"checks"`
	}
	if err := json.Unmarshal([]byte(d.must("check", "-o", "json")), &check); err != nil || len(check.Checks) == 0 || check.Checks[0].Name != "daemon" {
		t.Errorf("check -o json: %+v, %v; want the daemon row first", check, err)
	}
	waitFor(t, "the created event", func() bool { return len(events.of("created", "workload/js")) == 1 })
	if b := events.of("created", "workload/js")[0].Bytes; b <= 0 {
		t.Errorf("created event's bytes %d", b)
	}
}

// Refusals that say what to do instead.
func errorsPointToFix(t *testing.T, d *daemon) {
	d.mustFail("a target is a PID", "create", "0")
	d.mustFail("host's init", "create", "1")
	d.mustFail("not running", "schedule", "999999", "--every", "1m")
	d.mustFail("--socket "+d.socket+" attach", "run", "-t", "--name", "hint", "--", "sleep", "100")
	d.runLoad("fix", 4)
	c := d.create("fix", "--leave-running")
	dir := t.TempDir()
	d.mustFail("is a directory", "export", c.Name, dir)
	d.mustFail("does not exist", "export", c.Name, filepath.Join(dir, "no", "x.tar"))
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused exports left %v", ents)
	}
	file := filepath.Join(dir, "fix.tar.zst")
	d.must("export", c.Name, file)
	d.mustFail("--name", "import", file)
	_, errOut, err := d.ctl("import", file, "--name", "fix-imported", "--identity", file)
	if err != nil || !strings.Contains(errOut, "not encrypted") {
		t.Errorf("import --identity of a plain archive: %v, stderr %q; want a warning", err, errOut)
	}
	d.mustFail("--name", "restore", c.Name)

	out, err := exec.Command(bins.ckptd, "--help").CombinedOutput()
	if err != nil || strings.Count(string(out), "(default 16)") != 1 {
		t.Errorf("ckptd --help: %v\n%s", err, out)
	}
	if out, err := exec.Command(bins.ckptd, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "ckptd ") {
		t.Errorf("ckptd --version: %v, %q", err, out)
	}
	gone := filepath.Join(dir, "gone.sock")
	out, err = exec.Command(bins.ckptctl, "--socket", gone, "version").CombinedOutput()
	if err == nil || !strings.HasPrefix(string(out), "ckptctl: ") || !strings.Contains(string(out), "cannot reach ckptd") {
		t.Errorf("ckptctl version with ckptd down: %v\n%s", err, out)
	}
}

// logs -n 0, ps -q, rm --all, create's represented size.
func logsAndLists(t *testing.T, d *daemon) {
	d.must("run", "--name", "talker", "--", "sh", "-c", "echo one; echo two; sleep 1000")
	waitFor(t, "talker's output", func() bool { return strings.Contains(d.must("logs", "talker"), "two") })
	if out := d.must("logs", "-n", "0", "talker"); out != "" {
		t.Errorf("logs -n 0 printed %q", out)
	}
	if out := d.must("logs", "-n", "1", "talker"); out != "two\n" {
		t.Errorf("logs -n 1 printed %q", out)
	}
	d.mustFail("want a number of bytes", "logs", "--tail-bytes", "-1", "talker")
	if out := d.must("ps", "-q"); !strings.Contains(out, "talker\n") || strings.Contains(out, "PID") {
		t.Errorf("ps -q printed %q", out)
	}
	d.must("schedule", "talker", "--every", "1h")
	if out := d.must("schedule", "ls"); !strings.Contains(out, "\ntalker ") || strings.Contains(out, "workload/") {
		t.Errorf("schedule ls names targets as ps does not:\n%s", out)
	}
	d.must("schedule", "rm", "talker")
	d.runLoad("big", 16)
	d.create("big", "--leave-running")
	if out := d.must("create", "big", "--leave-running"); !strings.Contains(out, "stored of") {
		t.Errorf("an incremental create printed %q; want its stored size of the represented one", out)
	}
	out := d.must("rm", "--all")
	if !strings.Contains(out, "big-1") || !strings.Contains(out, "big-2") {
		t.Errorf("rm --all printed %q", out)
	}
	if cs := d.checkpoints(); len(cs) != 0 {
		t.Errorf("rm --all left %d checkpoints", len(cs))
	}
}
