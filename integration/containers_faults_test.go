package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"
)

// tcpScript holds an established TCP connection inside the container, which
// CRIU refuses to dump without --tcp-established.
const tcpScript = `sleep 1000 | nc -l -p 9000 & sleep 0.3; sleep 1000 | nc 127.0.0.1 9000 & ` + counterScript

// assertUntouched checks that a failed create left container id running,
// unpaused and counting, and nothing in the store.
func assertUntouched(t *testing.T, x *ctrd, d *daemon, id, logPath string) {
	t.Helper()
	if st := x.status(id); st != "running" {
		t.Errorf("container %s is %q after a failed create, want running", id, st)
	}
	if !counting(t, logPath) {
		t.Errorf("container %s does not count after a failed create", id)
	}
	if n := len(d.checkpoints()); n != 0 {
		t.Errorf("a failed create listed %d checkpoints", n)
	}
	stagingEmpty(t, d.root)
	markers, _ := filepath.Glob(filepath.Join(d.root, "dumps", "*", "paused.json"))
	if len(markers) != 0 {
		t.Errorf("paused markers left: %v", markers)
	}
}

func TestContainerBadInput(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	logPath := x.run("web", counterScript)
	waitCount(t, logPath, 2)
	img, err := x.c.GetImage(x.ctx(), testImage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.c.NewContainer(x.ctx(), "idle", client.WithNewSnapshot("idle", img), client.WithNewSpec()); err != nil {
		t.Fatal(err)
	}
	c := d.create("ctr:web", "--leave-running")
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"not found", []string{"create", "ctr:default/nope"}},
		{"not found", []string{"create", "ctr:other/web"}},
		{"container id", []string{"create", "ctr:default/"}},
		{"container namespace", []string{"create", "ctr:a b/web"}},
		{"not started, not running", []string{"create", "ctr:idle"}},
		{"exists and is running", []string{"restore", c.Name}},
		{"container id", []string{"restore", c.Name, "--name", "a/b/c"}},
		{"ckptd keeps the logs of containers it restored", []string{"logs", "ctr:web"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d.t = t
			d.mustFail(tc.want, tc.args...)
		})
	}
	d.t = t
	if n := len(d.checkpoints()); n != 1 {
		t.Errorf("bad input changed the store: %d checkpoints, want 1", n)
	}
	if st := x.status("web"); st != "running" {
		t.Errorf("web is %q after bad input", st)
	}
}

// TestContainerCRIUFailure: CRIU refuses the dump; the container must run on.
func TestContainerCRIUFailure(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	logPath := x.run("tcp", tcpScript)
	waitCount(t, logPath, 5)
	line := d.mustFail("TCP", "create", "ctr:tcp")
	if !strings.Contains(line, "log: ") {
		t.Errorf("error does not name the CRIU log: %s", line)
	}
	logFile := line[strings.LastIndex(line, "log: ")+5:]
	logFile = strings.TrimRight(logFile, ")")
	if _, err := os.Stat(logFile); err != nil {
		t.Errorf("the CRIU log the error names is gone: %v", err)
	}
	assertUntouched(t, x, d, "tcp", logPath)

	// --tcp-established reaches CRIU, but CRIU 4.1.1 cannot dump a TCP
	// socket on this kernel (getsockopt SO_PASSCRED/SO_PASSSEC on a TCP
	// socket fails with EOPNOTSUPP; raw `criu dump --tcp-established` of a
	// host process fails the same way). Should a CRIU fix that, this
	// fails and the option deserves a success test instead.
	d.mustFail("Can't get 1:34 opt", "create", "ctr:tcp", "--tcp-established")
	assertUntouched(t, x, d, "tcp", logPath)
}

// TestContainerDiskFull: the state root fills up during the create, with
// no room at all, and with room for the first files but not CRIU's pages.
func TestContainerDiskFull(t *testing.T) {
	for _, room := range []int64{0, 64 << 10} {
		t.Run(fmt.Sprintf("room %d KiB", room>>10), func(t *testing.T) {
			x := startContainerd(t, true)
			mnt := t.TempDir()
			if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=24m"); err != nil {
				t.Fatalf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() { unmountRetrying(t, mnt) })
			d := startDaemonAt(t, filepath.Join(mnt, "state"), x.in.Address)
			logPath := x.run("web", counterScript)
			waitCount(t, logPath, 2)
			fill(t, filepath.Join(mnt, "fill"), room)
			line := d.mustFail("space left on device", "create", "ctr:web")
			t.Log(line)
			assertUntouched(t, x, d, "web", logPath)
		})
	}
}

// fill writes into path until the filesystem is full, then frees room bytes.
func fill(t *testing.T, path string, room int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			break
		}
	}
	if err := f.Truncate(max(0, n-room)); err != nil {
		t.Fatal(err)
	}
}

// TestContainerKillDaemonWhilePaused kills ckptd while the container is
// paused for a checkpoint; the next ckptd resumes it.
func TestContainerKillDaemonWhilePaused(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	logPath := x.run("web", counterScript)
	waitCount(t, logPath, 2)
	done := make(chan error, 1)
	go func() { _, _, err := d.ctl("create", "ctr:web"); done <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for x.status("web") != "paused" {
		if time.Now().After(deadline) {
			t.Fatal("container never paused")
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.kill9()
	<-done
	// runc may still be dumping; it leaves the container paused either way.
	time.Sleep(time.Second)
	if st := x.status("web"); st != "paused" {
		t.Logf("container is %q after ckptd died (expected paused)", st)
	}
	d.start()
	if st := x.status("web"); st != "running" {
		t.Fatalf("container is %q after ckptd restarted, want running", st)
	}
	assertUntouched(t, x, d, "web", logPath)
}

// TestContainerCorruptedCheckpoint: a damaged image is refused at restore
// and no container is left behind.
func TestContainerCorruptedCheckpoint(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	logPath := x.run("web", counterScript)
	waitCount(t, logPath, 2)
	c := d.create("ctr:web", "--leave-running")
	corrupt(t, d, c.ID)
	d.mustFail("checksum", "restore", c.Name, "--name", "copy")
	if st := x.status("copy"); st != "absent" {
		t.Errorf("refused restore left container copy (%q)", st)
	}
	if st := x.status("web"); st != "running" {
		t.Errorf("original is %q", st)
	}

	// In place: the stopped container stays until the checkpoint is known good.
	c2 := d.create("ctr:web")
	corrupt(t, d, c2.ID)
	d.mustFail("checksum", "restore", c2.Name)
	if st := x.status("web"); st != "" {
		t.Errorf("refused in-place restore: container web is %q, want still there without a task", st)
	}
}

// corrupt flips a byte of a page image of checkpoint id.
func corrupt(t *testing.T, d *daemon, id string) {
	t.Helper()
	pages, _ := filepath.Glob(filepath.Join(d.root, "checkpoints", id, "pages-*.img"))
	if len(pages) == 0 {
		t.Fatal("no page images")
	}
	f, err := os.OpenFile(pages[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 100); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 100); err != nil {
		t.Fatal(err)
	}
}
