// Package integration drives the real ckptd, ckptctl and CRIU against real
// processes, and against private containerd instances it starts. It needs
// root, CRIU >= 4.1, containerd, runc and busybox-static (make deps);
// without them it fails loudly rather than skipping.
package integration

import (
	"github.com/ckptd/ckptd/test/nettest"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

var bins struct{ ckptd, ckptctl, memload, tcpload, term string }

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: integration tests need root (CRIU checkpoints other processes); run 'make test' as root")
		os.Exit(1)
	}
	for _, tool := range []string{"criu", "containerd", "runc", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s not found in PATH; run 'make deps'\n", tool)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "ckptd-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			out *string
			pkg string
		}{{&bins.ckptd, "./cmd/ckptd"}, {&bins.ckptctl, "./cmd/ckptctl"}, {&bins.memload, "./test/memload"}, {&bins.tcpload, "./test/tcpload"}, {&bins.term, "./cmd/ckptd-term"}} {
			*b.out = filepath.Join(dir, filepath.Base(b.pkg))
			args := []string{"build", "-o", *b.out}
			if b.pkg == "./cmd/ckptd" {
				// Every test also hunts data races in the daemon; failpoints
				// act only when a test sets their variable.
				args = append(args, "-race", "-tags", "failpoints")
			}
			cmd := exec.Command("go", append(args, b.pkg)...)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "FAIL: build %s: %v\n%s", b.pkg, err, out)
				return 1
			}
		}
		// Workloads get their own networks by default: what the CNI
		// plugins leave on the host once (ckptd's bridge, portmap's
		// chains, forwarding) goes when the suite ends.
		restoreHost, err := nettest.Snapshot("ckptd0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: note the host's network: %v\n", err)
			return 1
		}
		code := m.Run()
		if left := endStrays(dir); left != "" {
			fmt.Fprintf(os.Stderr, "FAIL: the tests left processes running (now killed): %s\n", left)
			code = 1
		}
		if err := restoreHost(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: put the host's network back: %v\n", err)
			code = 1
		}
		return code
	}()
	os.Exit(code)
}

// endStrays kills, by PID, every process still running a binary the tests
// built (a workload or copy some test did not end), and describes them.
func endStrays(binDir string) string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || filepath.Dir(exe) != binDir {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		if !gone(pid) {
			args, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			left = append(left, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(args), "\x00"), "\x00", " ")))
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return strings.Join(left, "; ")
}
