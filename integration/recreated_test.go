package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestRestoreWhatCRIURecreates: the restore pre-check leaves to CRIU what
// CRIU makes itself, as CRIU's own zdtm tests need (fanotify00,
// child_opened_proc and memfd02; pty00-04; ghost files; symlink): a
// process holding its own /proc/self/stat open, one holding a
// pseudo-terminal pair, one holding a deleted file above CRIU's default
// ghost limit, checkpointed with --ghost-limit 8M as CRIU takes it, and
// one holding a symbolic link itself (O_PATH) whose target is elsewhere. Each restores and
// runs. A regular file the tree needs and the host lacks is still
// refused before CRIU (TestRestoreNeedsMissingFiles).
func TestRestoreWhatCRIURecreates(t *testing.T) {
	d := startDaemon(t)
	ghost := filepath.Join(t.TempDir(), "ghost")
	links := t.TempDir()
	for _, tc := range []struct {
		name, script string
		args         []string
	}{
		{"proc-self", `f = open("/proc/self/stat")`, nil},
		{"pty-pair", `import os; m, s = os.openpty()`, nil},
		{"ghost", `import os; f = open("` + ghost + `", "w+b"); f.write(b"x" * (3 << 20)); f.flush(); os.unlink(f.name)`, []string{"--ghost-limit", "8M"}},
		// zdtm's symlink: an O_PATH descriptor on the link itself, whose
		// relative target does not resolve from the link's directory.
		{"symlink", `import os; open("` + links + `/file", "w"); os.symlink("dir/file", "` + links + `/link"); fd = os.open("` + links + `/link", os.O_PATH | os.O_NOFOLLOW)`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.t = t
			log := filepath.Join(t.TempDir(), "out")
			out, err := os.Create(log)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			p := exec.Command("python3", "-c", tc.script+"\nimport time\nprint('ready', flush=True)\ntime.sleep(1000)")
			p.Stdout, p.Stderr = out, out
			p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			pid := p.Process.Pid
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); p.Wait() })
			waitFor(t, tc.name+" ready", func() bool { return strings.Contains(readFile(log), "ready") })
			d.must(append([]string{"create", strconv.Itoa(pid), "--name", tc.name}, tc.args...)...)
			p.Wait() // the dump ended it
			d.must("restore", tc.name)
			if !alive(pid) {
				t.Fatalf("%s restored, but pid %d does not run", tc.name, pid)
			}
			d.must("kill", strconv.Itoa(pid))
			waitFor(t, tc.name+" ended", func() bool { return gone(pid) })
		})
	}
}
