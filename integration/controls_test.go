package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
