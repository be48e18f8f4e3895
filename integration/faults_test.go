package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillDaemonDuringCreate kills ckptd while CRIU is dumping: the target
// must keep running and no checkpoint may be listed after a restart.
func TestKillDaemonDuringCreate(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("victim", 512)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	create := exec.Command(bins.ckptctl, "--socket", d.socket, "create", "victim")
	if err := create.Start(); err != nil {
		t.Fatal(err)
	}
	defer create.Wait()
	waitFor(t, "criu to freeze the tree and write pages", func() bool {
		return criuChild(d.cmd.Process.Pid) > 0 && traced(w.Ref.PID) && stagedPages(d.root)
	})
	d.kill9()
	if err := create.Wait(); err == nil {
		t.Error("ckptctl create succeeded although ckptd was killed")
	}
	// The orphaned CRIU finds its ckptd gone when it next reports (after
	// the pages), and rolls back: the target runs again, untraced.
	waitFor(t, "target running again after ckptd was killed during create", func() bool {
		return alive(w.Ref.PID) && !traced(w.Ref.PID)
	})
	continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))

	d.start()
	if cs := d.checkpoints(); len(cs) != 0 {
		t.Errorf("checkpoints listed after the interrupted create: %+v", cs)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("staging not cleaned after restart: %v", left)
	}
	d.create("victim", "--leave-running") // the target is still usable
	syscall.Kill(w.Ref.PID, syscall.SIGKILL)
}

// criuChild returns the PID of a criu process whose parent is ppid, or 0.
func criuChild(ppid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if strings.Contains(s, "(criu)") && len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

func TestCorruptedCheckpointRefused(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("data", 16)
	c := d.create("data", "--leave-running")
	corrupt(t, d, c.ID, 4096)

	d.mustFail("does not match its checksum", "restore", c.Name, "--name", "bad")
	for _, tg := range d.ps() {
		if tg.Ref.Name == "bad" && tg.Running {
			t.Fatal("a copy restored from a corrupted checkpoint is running")
		}
	}
	d.mustFail("does not match its checksum", "verify")
	// A start reads no image: the damaged checkpoint is still listed and
	// still refused; the scrub moves it to quarantine.
	d.stop()
	d.args = []string{"--scrub-interval", "1s"}
	d.start()
	waitScrubbed(t, d, c.ID)
	if _, err := os.Stat(filepath.Join(d.root, "quarantine", c.ID)); err != nil {
		t.Errorf("damaged checkpoint not quarantined: %v", err)
	}
}

// TestStartReadsNoImage replaces a page image by a FIFO, which blocks
// whoever opens it for reading: ckptd must still start and list the
// checkpoint, and only verify and restore complain.
func TestStartReadsNoImage(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("fifo", 16)
	c := d.create("fifo", "--leave-running")
	d.stop()
	pages, err := filepath.Glob(filepath.Join(d.root, "checkpoints", c.ID, "pages-*.img"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no page image in %s: %v", c.ID, err)
	}
	os.Remove(pages[0])
	if err := syscall.Mkfifo(pages[0], 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	if cs := d.checkpoints(); len(cs) != 1 || cs[0].ID != c.ID {
		t.Fatalf("after start: %+v", cs)
	}
	d.mustFail("is not a regular file", "verify", c.Name)
	d.mustFail("is not a regular file", "restore", c.Name, "--name", "fifocopy")
}

// TestDiskFull checkpoints onto a state root too small for the images.
func TestDiskFull(t *testing.T) {
	d := &daemon{t: t}
	dir := t.TempDir()
	d.root, d.socket = filepath.Join(dir, "state"), filepath.Join(dir, "ckptd.sock")
	d.containerd = filepath.Join(dir, "no-containerd.sock")
	if err := os.Mkdir(d.root, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", d.root).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { unmountRetrying(t, d.root) })
	d.start()
	t.Cleanup(d.cleanup) // runs before the umount
	w := d.runLoad("big", 64)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)
	criuLogKept(t, d.mustFail("log:", "create", "big"))
	if !alive(w.Ref.PID) {
		t.Fatal("target not running after a failed create")
	}
	continues(t, before, loadStatus(t, w.Ref.PID, w.Ref.LogPath))
	if cs := d.checkpoints(); len(cs) != 0 {
		t.Errorf("partial checkpoint listed: %+v", cs)
	}
	for _, sub := range []string{"staging", "checkpoints"} {
		if left, _ := os.ReadDir(filepath.Join(d.root, sub)); len(left) != 0 {
			t.Errorf("%s not cleaned after failed create: %v", sub, left)
		}
	}
}

// criuLogKept checks that an error names a CRIU log and that the log is
// still there to read.
func criuLogKept(t *testing.T, msg string) {
	t.Helper()
	if _, after, ok := strings.Cut(msg, "(no log: CRIU ended before it wrote "); ok {
		// Killed at its very start: the directory for the log is kept.
		path, _, _ := strings.Cut(after, ")")
		if _, err := os.Stat(filepath.Dir(path)); err != nil || !strings.HasSuffix(path, ".log") {
			t.Errorf("error names %q, whose directory is gone: %v", path, err)
		}
		return
	}
	_, after, ok := strings.Cut(msg, "(log: ")
	path, _, _ := strings.Cut(after, ")")
	if !ok || !strings.HasSuffix(path, ".log") {
		t.Fatalf("error does not name a CRIU log: %q", msg)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the CRIU log the error names is gone: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("w", 8)
	d.create("w", "--leave-running", "--name", "base")
	d.create("w", "--leave-running", "--name", "child")
	d.mustFailAll(t, []failCase{
		{"not found", []string{"restore", "nope"}},
		{"not found", []string{"create", "no-such-workload"}},
		{"process 999999999", []string{"create", "999999999"}},
		{"contains '..'", []string{"create", "w", "--name", "a..b"}},
		{"use letters", []string{"create", "w", "--name", "a/b"}},
		{"longer than", []string{"restore", "base", "--name", strings.Repeat("x", 65)}},
		{"already exists", []string{"create", "w", "--name", "base"}},
		{"is running", []string{"run", "--name", "w", "--", bins.memload}},
		{"is running", []string{"restore", "base"}},
		{"descendants", []string{"rm", "base"}},
		{"--name is required", []string{"run", "--", "true"}},
		{"not found in PATH", []string{"run", "--name", "x", "--", "no-such-command-ckptd"}},
		{"--output", []string{"ls", "-o", "yaml"}},
		{"cannot reach ckptd", []string{"--socket", "/nonexistent/ckptd.sock", "ls"}},
		{"load CA", []string{"certs", "host", "h", "--ca", "/nonexistent", "--out", t.TempDir(), "--ip", "127.0.0.1"}},
		{"at least one IP address", []string{"certs", "host", "h", "--ca", "/nonexistent", "--out", t.TempDir()}},
	})
	if n := len(d.checkpoints()); n != 2 {
		t.Errorf("bad input changed the store: %d checkpoints, want 2", n)
	}
}

// TestHostProcess checkpoints a process ckptd did not launch, by PID, with
// a file lock, and restores it into its original PID.
func TestHostProcess(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	logPath, lockPath := filepath.Join(dir, "out.log"), filepath.Join(dir, "lock")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := exec.Command(bins.memload, "--mib", "16", "--lock", lockPath)
	p.Stdout, p.Stderr = out, out
	p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Process.Pid
	go p.Wait() // we are its parent until the checkpoint kills it
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, "memload ready", func() bool { return strings.Contains(readFile(logPath), "ready") })
	before := loadStatus(t, pid, logPath)

	// Restoring over the live PID is refused with the PID and a way out.
	c := d.create(strconv.Itoa(pid), "--leave-running", "--file-locks")
	line := d.mustFail(fmt.Sprintf("pid %d is in use", pid), "restore", c.Name)
	if !strings.Contains(line, "ckptctl run") {
		t.Errorf("refusal does not suggest workloads: %s", line)
	}
	d.mustFail("cannot be copied", "restore", c.Name, "--name", "copy")
	d.must("rm", c.Name)

	c = d.create(strconv.Itoa(pid), "--file-locks")
	waitFor(t, "target to end", func() bool { return !alive(pid) })
	if lockHeld(t, lockPath) {
		t.Fatal("lock still held after the target was killed")
	}
	// The log grew since the dump; the restored process must still get it.
	d.must("restore", c.Name)
	if !alive(pid) {
		t.Fatalf("pid %d not running after restore", pid)
	}
	if !lockHeld(t, lockPath) {
		t.Error("file lock not restored")
	}
	after := loadStatus(t, pid, logPath)
	continues(t, before, after)

	// The restored process is ckptd's child now. Checkpointing it kills it;
	// ckptd must reap it at once, or restoring into its PID fails with
	// "Can't fork for N: File exists".
	c2 := d.create(strconv.Itoa(pid), "--file-locks")
	if c2.Parent != c.ID {
		t.Errorf("second checkpoint has parent %q, want %s", c2.Parent, c.ID)
	}
	d.must("restore", c2.Name)
	continues(t, after, loadStatus(t, pid, logPath))
}

func lockHeld(t *testing.T, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return err == syscall.EWOULDBLOCK
}

// TestCRIUKilledDuringCreate kills the CRIU helper mid-dump: the target
// must come back running (not left stopped), the error must name the CRIU
// log, and nothing may be listed or left in staging.
func TestCRIUKilledDuringCreate(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("frozen", 512)
	before := loadStatus(t, w.Ref.PID, w.Ref.LogPath)

	create := exec.Command(bins.ckptctl, "--socket", d.socket, "create", "frozen")
	var stderr strings.Builder
	create.Stderr = &stderr
	if err := create.Start(); err != nil {
		t.Fatal(err)
	}
	var criu int
	// Killed only once the tree is frozen (traced by CRIU) and its pages
	// are being written: mid-dump, not before it.
	waitFor(t, "criu to freeze the tree and write pages", func() bool {
		criu = criuChild(d.cmd.Process.Pid)
		return criu > 0 && traced(w.Ref.PID) && stagedPages(d.root)
	})
	syscall.Kill(criu, syscall.SIGKILL)
	if err := create.Wait(); err == nil {
		t.Fatal("create succeeded although CRIU was killed")
	}
	t.Logf("create failed: %s", stderr.String())
	if msg := stderr.String(); strings.Count(msg, "\n") != 1 {
		t.Errorf("error is not one line: %q", msg)
	}
	criuLogKept(t, stderr.String())
	d.assertClean(t, w, before, 0) // a crash of the target is logged there
	if left, _ := os.ReadDir(filepath.Join(d.root, "checkpoints")); len(left) != 0 {
		t.Errorf("checkpoints not cleaned: %v", left)
	}
}

// TestPIDNamespaceProcess checkpoints, by its host PID, a process that is
// pid 1 of its own PID and IPC namespaces (as a database started with
// unshare is). CRIU recreates the namespace, so neither an in-place
// restore nor a named copy needs a host PID that is free.
func TestPIDNamespaceProcess(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "out.log")
	// Appended to, as a log is: the copy writes to it too, and CRIU checks
	// the size of a file opened for writing otherwise.
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ns := exec.Command("unshare", "--pid", "--ipc", "--fork", "--kill-child", "setsid", bins.memload, "--mib", "16")
	ns.Stdout, ns.Stderr = out, out
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Process.Kill(); ns.Wait() })
	var pid int
	waitFor(t, "memload in its namespace", func() bool {
		kids := strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%d/children", ns.Process.Pid, ns.Process.Pid)))
		if len(kids) == 1 {
			pid, _ = strconv.Atoi(kids[0])
		}
		return pid > 0 && strings.Contains(readFile(logPath), "ready")
	})

	c := d.create(strconv.Itoa(pid), "--leave-running")
	d.must("restore", c.Name, "--name", "nscopy")
	copyPID := 0
	for _, tg := range d.ps() {
		if tg.Ref.Name == "nscopy" && tg.Running {
			copyPID = tg.Ref.PID
		}
	}
	if copyPID == 0 || copyPID == pid || !alive(pid) {
		t.Fatalf("copy beside the original: copy pid %d, original %d alive %v", copyPID, pid, alive(pid))
	}
	d.must("kill", "nscopy")

	c = d.create(strconv.Itoa(pid)) // the original ends
	waitFor(t, "original to end", func() bool { return !alive(pid) })
	d.must("restore", c.Name)
	restored := 0
	for _, tg := range d.ps() {
		if tg.Ref.Kind == "process" && tg.Running {
			restored = tg.Ref.PID
		}
	}
	if restored == 0 {
		t.Fatalf("in-place restore of a PID-namespaced process is not running:\n%s", d.must("ps"))
	}
}

// TestRestoreWaitsForZombie restores a host process while its old PID is
// still a zombie whose parent (this test) has not reaped it yet: the
// restore waits for the PID to be freed, and says what holds it when it
// is not.
func TestRestoreWaitsForZombie(t *testing.T) {
	d := startDaemon(t)
	logPath := filepath.Join(t.TempDir(), "out.log")
	start := func() (*exec.Cmd, int) {
		out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		p := exec.Command(bins.memload, "--mib", "16")
		p.Stdout, p.Stderr = out, out
		p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Process.Kill(); p.Wait() })
		waitFor(t, "memload ready", func() bool { return strings.Contains(readFile(logPath), "ready") })
		return p, p.Process.Pid
	}

	p, pid := start()
	c := d.create(strconv.Itoa(pid))
	if st := readFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(st, ") Z ") {
		t.Fatalf("old pid %d is not a zombie at restore time: %q", pid, st)
	}
	time.AfterFunc(2*time.Second, func() { p.Wait() }) // reaped while the restore waits
	d.must("restore", c.Name)
	if !alive(pid) {
		t.Fatalf("pid %d not running after the restore", pid)
	}
	d.must("kill", strconv.Itoa(pid))
	waitFor(t, "restored copy to end", func() bool { return !alive(pid) })

	p, pid = start()
	c = d.create(strconv.Itoa(pid))
	d.mustFail(fmt.Sprintf("still held by a zombie that its parent (pid %d) has not reaped", os.Getpid()), "restore", c.Name)
	p.Wait()
	d.must("restore", c.Name)
}

// TestRestoreNeedsMissingFiles: a checkpoint holds a temp file the program
// has since renamed away (as status files are rewritten) and a file that
// has grown. The restore is refused before CRIU runs, naming both in one
// line; inspect shows them; put back, the restore works.
func TestRestoreNeedsMissingFiles(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	tmp, grown := filepath.Join(dir, "status.tmp"), filepath.Join(dir, "data")
	d.must("run", "--name", "holder", "--", "sh", "-c",
		fmt.Sprintf("exec 3>%s 4>%s; echo ok >&3; echo 1 >&4; echo ready; exec sleep 600", tmp, grown))
	waitFor(t, "holder ready", func() bool { return strings.Contains(d.must("logs", "holder"), "ready") })
	c := d.create("holder")
	if err := os.Rename(tmp, filepath.Join(dir, "status")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grown, []byte("123456"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.mustFail(fmt.Sprintf("needs files this host lacks: %s has 6 bytes, the checkpoint expects 2; %s is missing", grown, tmp), "restore", c.Name)
	if out := d.must("inspect", c.Name); !strings.Contains(out, tmp) || !strings.Contains(out, "is missing") {
		t.Errorf("inspect does not show what the restore needs:\n%s", out)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "restores")); len(left) != 0 {
		t.Errorf("a restore refused before CRIU left %d work dirs", len(left))
	}
	os.Rename(filepath.Join(dir, "status"), tmp)
	os.WriteFile(grown, []byte("1\n"), 0o600)
	d.must("restore", c.Name)
}
