package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestCallerInNestedPIDNamespace: a ckptctl inside a container-like PID
// namespace names processes by that namespace's numbers. "create 4" from
// there checkpoints its own PID 4 (the init of a namespace nested in it),
// not the host's PID 4, a kernel thread. (zdtm found it: each of its
// tests runs in new namespaces, and the host's PID was some other
// process of the run.)
func TestCallerInNestedPIDNamespace(t *testing.T) {
	d := startDaemon(t)
	// The inner init is the child of the inner unshare: 4, or a little
	// more if the shell's own children took PIDs first.
	// CRIU dumps it from the host's mount namespace (fd 3): a session
	// leader with nothing open on the namespace's own mounts.
	script := `sleep 1000.5 & unshare --pid --fork nsenter --mount=/proc/self/fd/3 ` +
		`sh -c 'exec setsid sleep 1000.6 </dev/null >/dev/null 2>&1 3<&-' & u=$!; ` +
		`while [ -z "$c" ]; do c=$(cat /proc/$u/task/$u/children 2>/dev/null); sleep 0.05; done; ` +
		`"$CKPTCTL" --socket "$SOCK" -o json create $c --leave-running; echo "exit $?"; sleep 1000.7`
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "CKPTCTL="+bins.ckptctl, "SOCK="+d.socket)
	mntns, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	defer mntns.Close()
	cmd.ExtraFiles = []*os.File{mntns}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	waitFor(t, "ckptctl in the namespace to finish", func() bool { return strings.Contains(out.String(), "exit ") })
	if !strings.Contains(out.String(), "exit 0") {
		t.Fatalf("create 4 from the nested namespace failed:\n%s", out)
	}
	var c struct {
		Target struct {
			PID int `json:"pid"`
		} `json:"target"`
	}
	text := out.String()
	if err := json.Unmarshal([]byte(text[:strings.LastIndex(text, "exit ")]), &c); err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	argv := strings.Split(readFile("/proc/"+strconv.Itoa(c.Target.PID)+"/cmdline"), "\x00")
	if argv[0] != "sleep" || argv[1] != "1000.6" {
		t.Fatalf("the checkpoint's target is host PID %d, %q; want the namespace's sleep 1000.6", c.Target.PID, argv)
	}
}
