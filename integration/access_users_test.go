package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSocketGroupCallers: a socket_group member who is not root acts as
// itself. Its workloads run as its uid; it checkpoints, lists, restores,
// exports and imports only its own, and what is root's is not there for
// it; containers, migrations, events, --criu-config and another --user
// need root. Root sees everything, and runs workloads as a user with
// --user.
func TestSocketGroupCallers(t *testing.T) {
	shared := sharedDir(t)
	ctl, load := shareBinary(t, shared, bins.ckptctl), shareBinary(t, shared, bins.memload)
	checkStraysAfter(t)
	dir := t.TempDir()
	d := &daemon{t: t, root: filepath.Join(dir, "state"), socket: filepath.Join(shared, "ckptd.sock"),
		containerd: filepath.Join(dir, "no-containerd.sock"), args: []string{"--socket-group", "nogroup"}}
	d.start()
	t.Cleanup(d.cleanup)
	user := func(args ...string) (string, string, error) {
		cmd := exec.Command(ctl, append([]string{"--socket", d.socket}, args...)...)
		cmd.Dir = shared
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String(), e.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := user(args...)
		if err != nil {
			t.Fatalf("as uid 65534: ckptctl %s: %v: %s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	endAtCleanup := func(name string) {
		pid := d.workload(name).Ref.PID
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}

	root := d.runLoad("rootjob", 8)
	d.create("rootjob", "--leave-running", "--name", "root1")
	must("run", "--name", "mine", "--", load, "--mib", "8")
	endAtCleanup("mine")
	mine := d.workload("mine")
	wantUID(t, mine.Ref.PID, 65534)
	hash := loadStatus(t, mine.Ref.PID, mine.Ref.LogPath).Hash
	must("create", "mine", "--leave-running", "--name", "mine1")

	if names := userNames(t, must("ls", "-o", "json")); names != "mine1" {
		t.Errorf("uid 65534 lists checkpoints %q, want only its own", names)
	}
	if out := must("ps", "-a", "-q"); strings.TrimSpace(out) != "mine" {
		t.Errorf("uid 65534's ps shows %q, want only its own workload", out)
	}
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	file := filepath.Join(shared, "x.tar.zst")
	for _, c := range []failCase{
		{"not found", []string{"inspect", "root1"}},
		{"not found", []string{"restore", "root1", "--name", "stolen"}},
		{"not found", []string{"rm", "root1"}},
		{"not found", []string{"export", "root1", file}},
		{"not found", []string{"kill", "rootjob"}},
		{"not found", []string{"logs", "rootjob"}},
		{"not found", []string{"create", "rootjob"}},
		{"not found", []string{"create", fmt.Sprint(root.Ref.PID)}},
		{"is not yours", []string{"create", fmt.Sprint(sleeper.Process.Pid)}},
		{"needs root", []string{"migrate", "mine", "--to", "127.0.0.1:1"}},
		{"needs root", []string{"events"}},
		{"needs root", []string{"create", "ctr:default/x"}},
		{"needs root", []string{"create", "mine", "--criu-config", "/etc/hostname"}},
		{"you are uid 65534", []string{"run", "--user", "0", "--name", "asroot", "--", load}},
	} {
		_, errOut, err := user(c.args...)
		if err == nil || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("as uid 65534, ckptctl %s: %v: %q, want one line with %q", strings.Join(c.args, " "), err, errOut, c.want)
		}
	}
	if !alive(root.Ref.PID) || traced(sleeper.Process.Pid) {
		t.Error("root's workload or process was touched")
	}

	// Its own round trip: an archive of its tree imports as its own; root's
	// does not.
	must("export", "mine1", filepath.Join(shared, "mine1.tar.zst"))
	must("import", filepath.Join(shared, "mine1.tar.zst"), "--name", "mine-back")
	d.must("export", "root1", filepath.Join(shared, "root1.tar.zst"))
	os.Chmod(filepath.Join(shared, "root1.tar.zst"), 0o644)
	if _, errOut, err := user("import", filepath.Join(shared, "root1.tar.zst")); err == nil || !strings.Contains(errOut, "not as you") {
		t.Errorf("uid 65534 imported root's tree: %v: %s", err, errOut)
	}
	must("kill", "mine")
	must("restore", "mine-back", "--name", "mine2")
	endAtCleanup("mine2")
	copy := d.workload("mine2")
	wantUID(t, copy.Ref.PID, 65534)
	if got := loadStatus(t, copy.Ref.PID, copy.Ref.LogPath).Hash; got != hash {
		t.Errorf("restored with memory %s, want %s", got, hash)
	}

	// Root sees it all, and runs as a user when asked.
	if out := d.must("inspect", "mine1"); !strings.Contains(out, "Owner:     uid 65534") {
		t.Errorf("root's inspect of uid 65534's checkpoint:\n%s", out)
	}
	d.must("run", "--user", "nobody", "--name", "given", "--", load, "--mib", "4")
	endAtCleanup("given")
	wantUID(t, d.workload("given").Ref.PID, 65534)
	if out := must("ps", "-q"); !strings.Contains(out, "given") {
		t.Errorf("uid 65534 does not see the workload root ran as it: %q", out)
	}
}

func wantUID(t *testing.T, pid, uid int) {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid)
	if err != nil || !strings.Contains(string(st), want) {
		t.Errorf("process %d does not run as uid %d: %v\n%s", pid, uid, err, st)
	}
}

func userNames(t *testing.T, out string) string {
	t.Helper()
	var cs []checkpoint
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("ls -o json: %v: %s", err, out)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

// sharedDir is a directory another user can enter: t.TempDir's parent is
// root's alone.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ckptd-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shareBinary copies bin into dir, where another user can run it.
func shareBinary(t *testing.T, dir, bin string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.Base(bin))
	if out, err := exec.Command("cp", bin, p).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return p
}
