package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestServiceInstall: make install stages the binaries, the systemd unit
// and the default config; systemd-analyze verify passes the unit as
// installed (pointed at the staged binary); a second install keeps an
// edited config.
func TestServiceInstall(t *testing.T) {
	dest := t.TempDir()
	install := func() {
		t.Helper()
		cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "BIN="+filepath.Join(dest, "build"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	for _, f := range []string{"usr/local/bin/ckptd", "usr/local/bin/ckptctl", "usr/local/bin/ckptd-term"} {
		if st, err := os.Stat(filepath.Join(dest, f)); err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/ckptd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "KillMode=process", "ExecStart=/usr/local/bin/ckptd --config /etc/ckptd/config.toml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	staged := strings.NewReplacer("/usr/local/bin/", filepath.Join(dest, "usr/local/bin")+"/",
		"/etc/ckptd/", filepath.Join(dest, "etc/ckptd")+"/").Replace(string(unit))
	unitPath := filepath.Join(t.TempDir(), "ckptd.service")
	if err := os.WriteFile(unitPath, []byte(staged), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	conf := filepath.Join(dest, "etc/ckptd/config.toml")
	if out, err := exec.Command(filepath.Join(dest, "usr/local/bin/ckptd"), "--config", conf, "--version").CombinedOutput(); err != nil {
		t.Fatalf("the installed ckptd: %v\n%s", err, out)
	}
	if err := os.WriteFile(conf, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	install()
	if data, _ := os.ReadFile(conf); string(data) != "# edited\n" {
		t.Fatalf("a second make install replaced an edited config: %q", data)
	}
}

// TestServiceReadiness: under a service manager (NOTIFY_SOCKET, here a
// socket the test listens on, as systemd's), ckptd says READY=1 once its
// API socket serves, and STOPPING=1 when it is stopped.
func TestServiceReadiness(t *testing.T) {
	notify := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	checkStraysAfter(t)
	d := &daemon{t: t, root: filepath.Join(dir, "state"), socket: filepath.Join(dir, "ckptd.sock"),
		containerd: filepath.Join(dir, "no-containerd.sock"), env: []string{"NOTIFY_SOCKET=" + notify}}
	d.start()
	t.Cleanup(d.cleanup)
	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		l.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, "STATUS=serving "+d.socket) {
		t.Fatalf("first notification %q, want READY=1 and the socket", got)
	}
	d.must("version")
	d.stop()
	if got := read(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Fatalf("notification at stop %q, want STOPPING=1", got)
	}
}

// TestUpgrade: a ckptd stopped for an upgrade (not a shutdown) leaves its
// workloads and terminal sessions running, and a newly built ckptd on the
// same state root adopts them: the same processes, their state, the
// session's screen, and the commands that act on them.
func TestUpgrade(t *testing.T) {
	d := startDaemon(t)
	job := d.runLoad("job", 16)
	before := loadStatus(t, job.Ref.PID, job.Ref.LogPath)
	c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "run", "-it", "--name", "sess", "--", "/usr/bin/python3", "-q")
	c.expect(">>> ")
	c.send("x = 41\r")
	c.ask("val", "x", "41")
	c.detach("sess")
	sess := d.workload("sess")

	// The new version: built apart, with its own version string and its
	// terminal holder beside it.
	dir := t.TempDir()
	build := exec.Command("go", "build", "-ldflags", "-X github.com/ckptd/ckptd/daemon.Version=upgraded", "-o", filepath.Join(dir, "ckptd"), "./cmd/ckptd")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the new ckptd: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", bins.term, filepath.Join(dir, "ckptd-term")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	d.stop()
	if !alive(job.Ref.PID) || !alive(sess.Ref.PID) {
		t.Fatal("stopping ckptd ended its workloads")
	}
	d.bin = filepath.Join(dir, "ckptd")
	d.start()
	if v := d.must("version"); !strings.Contains(v, "upgraded") {
		t.Fatalf("not the new ckptd: %s", v)
	}
	for _, w := range []target{job, sess} {
		if x := d.workload(w.Ref.Name); !x.Running || x.Ref.PID != w.Ref.PID {
			t.Fatalf("the new ckptd lists %s as %+v, was pid %d", w.Ref.Name, x, w.Ref.PID)
		}
	}
	continues(t, before, loadStatus(t, job.Ref.PID, job.Ref.LogPath))
	c = d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "sess")
	c.ask("val", "x", "41")
	c.detach("sess")
	d.create("job", "--leave-running", "--name", "after")
	d.must("stop", "sess", "--time", "1")
	d.must("kill", "job")
}
