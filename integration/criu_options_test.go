package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGhostLimit: a deleted file held open that is over CRIU's 1 MiB ghost
// limit fails the dump, naming the limit; --ghost-limit lets it through,
// and a CRIU configuration file is passed on (a bad one is refused before
// anything freezes).
func TestGhostLimit(t *testing.T) {
	d := startDaemon(t)
	ghost := filepath.Join(t.TempDir(), "ghost")
	script := "head -c 2097152 /dev/zero > " + ghost + "; exec 3<" + ghost + "; rm " + ghost + "; while sleep 0.1; do :; done"
	d.must("run", "--name", "gh", "--", "/bin/sh", "-c", script)
	w := d.workload("gh")
	waitFor(t, "file deleted", func() bool { _, err := os.Stat(ghost); return os.IsNotExist(err) })

	d.mustFail("ghost", "create", "gh", "--leave-running")
	d.mustFail("CRIU configuration file", "create", "gh", "--leave-running", "--criu-config", "/nonexistent/criu.conf")
	if !alive(w.Ref.PID) || traced(w.Ref.PID) {
		t.Fatal("workload not running after refused creates")
	}
	conf := filepath.Join(t.TempDir(), "criu.conf")
	if err := os.WriteFile(conf, []byte("ghost-limit 4194304\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.must("create", "gh", "--leave-running", "--name", "by-config", "--criu-config", conf)
	d.must("create", "gh", "--leave-running", "--name", "by-flag", "--ghost-limit", "4194304")
	d.must("restore", "by-flag", "--name", "gh-copy")
	d.must("kill", "gh-copy")
}

// TestOtherUsersProcess: CRIU reads every task's resource limits, which
// needs CAP_SYS_RESOURCE for another user's process; where ckptd lacks it
// (as here), the create says so in one line before anything freezes.
func TestOtherUsersProcess(t *testing.T) {
	d := startDaemon(t)
	p := exec.Command("sleep", "1000")
	p.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	pid := strconv.Itoa(p.Process.Pid)
	t.Logf("other user's process: %s", pid)
	var caps [2]unix.CapUserData // version 3 fills two
	if err := unix.Capget(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &caps[0]); err != nil {
		t.Fatal(err)
	}
	if caps[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		t.Logf("this host grants CAP_SYS_RESOURCE: the dump must work")
		d.must("create", pid, "--leave-running")
		return
	}
	line := d.mustFail("CAP_SYS_RESOURCE", "create", pid, "--leave-running")
	if !strings.Contains(line, "uid 65534") {
		t.Errorf("refusal does not name the uid: %s", line)
	}
	if traced(p.Process.Pid) || !alive(p.Process.Pid) {
		t.Error("the other user's process is not running untouched")
	}
}

// TestLinkRemap: a file held open whose name was removed while another
// hard link to it stays cannot be dumped without --link-remap; with it,
// CRIU links it back for the dump (as link_remap.N beside it) and the tree
// restores. (A --leave-running snapshot taken with --link-remap failed to
// restore here: "Can't link .../link_remap.7 -> .../name: No such file or
// directory"; not looked into yet.)
func TestLinkRemap(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	name, other := filepath.Join(dir, "name"), filepath.Join(dir, "other")
	script := "echo data > " + name + "; ln " + name + " " + other + "; exec 3<" + name + "; rm " + name + "; while sleep 0.1; do :; done"
	d.must("run", "--name", "lr", "--", "/bin/sh", "-c", script)
	waitFor(t, "name removed", func() bool { _, err := os.Stat(name); return os.IsNotExist(err) })
	line := d.mustFail("link", "create", "lr", "--leave-running")
	t.Logf("without --link-remap: %s", line)
	d.must("create", "lr", "--name", "remapped", "--link-remap")
	d.must("restore", "remapped")
	if w := d.workload("lr"); !w.Running {
		t.Errorf("lr not running after its restore: %+v", w)
	}
}
