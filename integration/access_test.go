package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAccess: a checkpoint holds a process's whole memory. The API socket
// is root's alone unless socket_group shares it; every request is logged
// with its caller's uid; the state root and everything in it are root's
// alone whatever the umask.
func TestAccess(t *testing.T) {
	// Somewhere another user can reach: t.TempDir's parent is root's alone.
	shared, err := os.MkdirTemp("", "ckptd-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	ctlCopy := filepath.Join(shared, "ckptctl")
	if out, err := exec.Command("cp", bins.ckptctl, ctlCopy).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	asNobody := func(d *daemon, args ...string) (string, error) {
		cmd := exec.Command(ctlCopy, append([]string{"--socket", d.socket}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	old := syscall.Umask(0)
	start := func(args ...string) *daemon {
		d := &daemon{t: t, root: filepath.Join(t.TempDir(), "state"), socket: filepath.Join(shared, "s"+args[0]+".sock"),
			containerd: filepath.Join(shared, "no-containerd.sock"), args: args[1:]}
		d.start()
		t.Cleanup(d.cleanup)
		return d
	}
	d := start("1")
	syscall.Umask(old)

	st, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o600 || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("socket is %v %d:%d, want 0600 root:root", st.Mode().Perm(), sys.Uid, sys.Gid)
	}
	if out, err := asNobody(d, "version"); err == nil || !strings.Contains(out, "permission denied") || !strings.HasPrefix(out, "ckptctl: ") {
		t.Errorf("another user, refused by the socket: %v %s", err, out)
	}

	d.runLoad("private", 16)
	d.create("private", "--leave-running")
	err = filepath.Walk(d.root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v, readable beyond root", p, info.Mode().Perm())
		}
		// Below these, the CNI plugins keep their files with their own
		// modes (host-local's allocations) and namespaces are nsfs
		// mounts (0444): only root enters the directories themselves.
		if dir := filepath.Base(p); err == nil && filepath.Dir(p) == d.root && (dir == "network" || dir == "netns") {
			return filepath.SkipDir
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	g := start("2", "--socket-group", "nogroup")
	if st, err := os.Stat(g.socket); err != nil || st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Errorf("socket with socket_group: %v %v", st.Mode(), err)
	}
	if out, err := asNobody(g, "version"); err != nil {
		t.Errorf("a member of socket_group was refused: %v %s", err, out)
	}
	if !logged(g, "msg=request", "method=/ckptd.v1.Ckptd/Version", "uid=65534") {
		t.Errorf("the request was not logged with its caller's uid:\n%s", g.log)
	}
}
