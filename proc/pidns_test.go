package proc

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHostPID reads PIDs as a process in a nested PID namespace sees
// them: a shell that is its namespace's init, its child, and the init of
// a namespace nested once more.
func TestHostPID(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed:", err)
	}
	// sh is 1 in its namespace, its sleep 2, the inner unshare 3 and its
	// child, the init of the inner namespace, 4 (a new namespace hands
	// PIDs out in order).
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
		"sleep 1000.1 & unshare --pid --fork sleep 1000.2 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	var sh, outer, inner int
	for deadline := time.Now().Add(10 * time.Second); inner == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the namespaces' processes never appeared")
		}
		for _, p := range Tree(cmd.Process.Pid) {
			argv, _ := Cmdline(p)
			switch strings.Join(argv, " ") {
			case "sh -c sleep 1000.1 & unshare --pid --fork sleep 1000.2 & wait":
				sh = p
			case "sleep 1000.1":
				outer = p
			case "sleep 1000.2":
				inner = p
			}
		}
	}
	self := os.Getpid()
	tests := []struct {
		viewer, pid, want int
	}{
		{self, inner, inner}, // ckptd's own namespace: as it is
		{sh, 1, sh},
		{sh, 2, outer},
		{sh, 4, inner}, // the inner init, as its parent's namespace numbers it
	}
	for _, tc := range tests {
		got, err := HostPID(tc.viewer, tc.pid)
		if err != nil || got != tc.want {
			t.Errorf("HostPID(%d, %d) = %d, %v; want %d", tc.viewer, tc.pid, got, err, tc.want)
		}
	}
	if got, err := HostPID(sh, 999); !errors.Is(err, ErrNotInNamespace) {
		t.Errorf("HostPID(sh, 999) = %d, %v; want ErrNotInNamespace", got, err)
	}
}
