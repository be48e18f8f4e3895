package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLazyPages pins why a lazy dump raises fs.pipe-max-size (see
// criu.LazyPipeMax), with raw CRIU
// post-copy (dump --lazy-pages, lazy-pages --page-server, restore
// --lazy-pages) on a small memload, on this kernel: with fs.pipe-max-size
// at 1 MiB and no CAP_SYS_RESOURCE the dumping side fails once the
// restored tree asks for pages; with 8 MiB it works.
func TestLazyPages(t *testing.T) {
	const sysctl = "/proc/sys/fs/pipe-max-size"
	orig := strings.TrimSpace(readFile(sysctl))
	if orig == "" {
		t.Fatalf("cannot read %s", sysctl)
	}
	t.Cleanup(func() { os.WriteFile(sysctl, []byte(orig), 0o644) })
	setPipeMax := func(v string) {
		if err := os.WriteFile(sysctl, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("pipe-max-size 1MiB", func(t *testing.T) {
		setPipeMax("1048576")
		if log, err := lazyRun(t); err == nil {
			t.Fatal("CRIU's lazy dump worked with fs.pipe-max-size 1 MiB: criu.RaisePipeMax may go")
		} else if !strings.Contains(log, "page-pipe: splice") || !strings.Contains(log, "Bad file descriptor") {
			t.Fatalf("lazy dump failed, but not as criu.LazyPipeMax says: %v\n%s", err, tail(log, 10))
		}
	})
	t.Run("pipe-max-size 8MiB", func(t *testing.T) {
		setPipeMax("8388608")
		if log, err := lazyRun(t); err != nil {
			t.Fatalf("lazy dump failed with fs.pipe-max-size 8 MiB: %v\n%s", err, tail(grepLines(log, "Error"), 5))
		}
	})
}

// lazyRun migrates a memload by hand with CRIU post-copy and returns the
// dumping side's log and error; the source must resume either way.
func lazyRun(t *testing.T) (string, error) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// memload as pid 1 of its own PID namespace, so a restore beside it
	// gets its PIDs.
	// memload leads its own session: CRIU wants the session inside the tree.
	ns := exec.Command("unshare", "--pid", "--fork", "--kill-child", "setsid", bins.memload, "--mib", "16")
	ns.Stdout, _ = os.Create(filepath.Join(dir, "memload.log"))
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Process.Kill(); ns.Wait() })
	var pid int
	waitFor(t, "memload in its namespace", func() bool {
		kids := strings.Fields(readFile("/proc/" + strconv.Itoa(ns.Process.Pid) + "/task/" + strconv.Itoa(ns.Process.Pid) + "/children"))
		if len(kids) == 1 {
			pid, _ = strconv.Atoi(kids[0])
		}
		return pid > 0
	})
	port := freePort(t)

	dump := startCRIU(t, "dump", "-t", strconv.Itoa(pid), "-D", src, "--shell-job", "--lazy-pages",
		"--address", "127.0.0.1", "--port", port, "-v4", "-o", "dump.log")
	waitFor(t, "lazy dump serving pages", func() bool {
		if !alive(dump.Process.Pid) {
			t.Fatalf("lazy dump ended early:\n%s", grepLines(readFile(filepath.Join(src, "dump.log")), "Error"))
		}
		return strings.Contains(readFile(filepath.Join(src, "dump.log")), "Starting page server")
	})
	imgs, _ := filepath.Glob(filepath.Join(src, "*.img"))
	for _, img := range imgs {
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(img)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lazy := startCRIU(t, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", port, "-D", dst, "-v4", "-o", "lazy.log")
	waitFor(t, "lazy-pages socket", func() bool { _, err := os.Stat(filepath.Join(dst, "lazy-pages.socket")); return err == nil })
	// Bounded: on CRIU 4.2.1 a failed lazy restore waited forever on its
	// dead child.
	restore := startCRIU(t, "restore", "-D", dst, "--lazy-pages", "--shell-job", "-d", "--pidfile", "restored.pid", "-v4", "-o", "restore.log")
	if err := waitCmd(restore, 60*time.Second); err != nil {
		t.Logf("restore: %v", err)
	}
	if rpid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(dst, "restored.pid")))); err == nil {
		t.Cleanup(func() { syscall.Kill(rpid, syscall.SIGKILL) })
	}
	dumpErr := waitCmd(dump, 60*time.Second)
	waitCmd(lazy, 10*time.Second)
	log := readFile(filepath.Join(src, "dump.log"))
	t.Logf("lazy dump: %v %s", dumpErr, tail(grepLines(log, "Error"), 3))
	if dumpErr != nil && !alive(pid) {
		t.Error("the lazily dumped source did not resume after the failure")
	}
	return log, dumpErr
}

// startCRIU starts a raw criu in a process group of its own, ended whole
// (by its PGID) when the test ends.
func startCRIU(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("criu", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cmd.ProcessState == nil {
			cmd.Wait()
		}
	})
	return cmd
}

// waitCmd waits for cmd, killing its process group after timeout.
func waitCmd(cmd *exec.Cmd, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return <-done
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
