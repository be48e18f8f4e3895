package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	x, d, _ := withRunningContainer(t, "web", counterScript, 2)
	img, err := x.c.GetImage(x.ctx(), testImage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.c.NewContainer(x.ctx(), "idle", client.WithNewSnapshot("idle", img), client.WithNewSpec()); err != nil {
		t.Fatal(err)
	}
	c := d.create("ctr:web", "--leave-running")
	d.mustFailAll(t, []failCase{
		{"not found", []string{"create", "ctr:default/nope"}},
		{"not found", []string{"create", "ctr:other/web"}},
		{"container id", []string{"create", "ctr:default/"}},
		{"container namespace", []string{"create", "ctr:a b/web"}},
		{"not started, not running", []string{"create", "ctr:idle"}},
		{"exists and is running", []string{"restore", c.Name}},
		{"container id", []string{"restore", c.Name, "--name", "a/b/c"}},
		{"runc, which has no such option", []string{"restore", c.Name, "--name", "web2", "--tcp-close"}},
		{"ckptd keeps the logs of containers it restored", []string{"logs", "ctr:web"}},
	})
	if n := len(d.checkpoints()); n != 1 {
		t.Errorf("bad input changed the store: %d checkpoints, want 1", n)
	}
	if st := x.status("web"); st != "running" {
		t.Errorf("web is %q after bad input", st)
	}
}

// TestContainerCRIUFailure: CRIU refuses the dump (an established TCP
// connection without --tcp-established); the container must run on.
func TestContainerCRIUFailure(t *testing.T) {
	x, d, logPath := withRunningContainer(t, "tcp", tcpScript, 5)
	criuLogKept(t, d.mustFail("TCP", "create", "ctr:tcp"))
	assertUntouched(t, x, d, "tcp", logPath)

	// With --tcp-established, CRIU >= 4.2 dumps the connection (4.1.1
	// could not dump any TCP socket on kernels >= 6.16).
	d.must("create", "ctr:tcp", "--tcp-established", "--leave-running", "--name", "tcp-ok")
	if st := x.status("tcp"); st != "running" {
		t.Errorf("container is %q after a --tcp-established --leave-running create", st)
	}
	if n := len(d.checkpoints()); n != 1 {
		t.Errorf("%d checkpoints listed, want the one --tcp-established made", n)
	}
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
	x, d, logPath := withRunningContainer(t, "web", counterScript, 2)
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
	// runc may still be dumping; it leaves the container paused either
	// way, and nobody but ckptd would resume it.
	time.Sleep(time.Second)
	if st := x.status("web"); st != "paused" {
		t.Fatalf("container is %q after ckptd died, want paused (else this test proves nothing)", st)
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
	x, d, _ := withRunningContainer(t, "web", counterScript, 2)
	c := d.create("ctr:web", "--leave-running")
	corrupt(t, d, c.ID, 100)
	d.mustFail("checksum", "restore", c.Name, "--name", "copy")
	if st := x.status("copy"); st != "absent" {
		t.Errorf("refused restore left container copy (%q)", st)
	}
	if st := x.status("web"); st != "running" {
		t.Errorf("original is %q", st)
	}

	// In place: the stopped container stays until the checkpoint is known good.
	c2 := d.create("ctr:web")
	corrupt(t, d, c2.ID, 100)
	d.mustFail("checksum", "restore", c2.Name)
	if st := x.status("web"); st != "" {
		t.Errorf("refused in-place restore: container web is %q, want still there without a task", st)
	}
}

// TestContainerCommitFails: two containers checkpointed at once under one
// name both pass the early name check; the second to publish fails inside
// the commit, while its container is frozen. It must be resumed.
func TestContainerCommitFails(t *testing.T) {
	x, d, logA := withRunningContainer(t, "a", counterScript, 2)
	logB := filepath.Join(x.in.Dir, "b.log")
	if err := x.in.Run(context.Background(), "default", testImage, "b", counterScript, logB); err != nil {
		t.Fatal(err)
	}
	waitCount(t, logB, 2)
	// b starts once a is paused, past its name check, and both publish
	// after that: the second to publish is refused inside its commit.
	waitA := d.startCtl("create", "--leave-running", "--name", "same", "ctr:a")
	waitFor(t, "container a paused for its checkpoint", func() bool { return x.status("a") == "paused" })
	waitB := d.startCtl("create", "--leave-running", "--name", "same", "ctr:b")
	var failed []string
	for _, wait := range []func() (string, error){waitA, waitB} {
		if stderr, err := wait(); err != nil {
			failed = append(failed, stderr)
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0], "already exists") {
		t.Fatalf("want exactly one create refused for the taken name, got %q", failed)
	}
	if !strings.Contains(failed[0], "publish") {
		t.Fatalf("the refusal came from the early name check, not from the commit: %s", failed[0])
	}
	if n := len(d.checkpoints()); n != 1 {
		t.Errorf("%d checkpoints listed, want 1", n)
	}
	for id, logPath := range map[string]string{"a": logA, "b": logB} {
		if st := x.status(id); st != "running" {
			t.Errorf("container %s is %q, want running", id, st)
		}
		if !counting(t, logPath) {
			t.Errorf("container %s does not count", id)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(entries) != 0 {
		t.Errorf("staging holds %d entries", len(entries))
	}
}

// TestContainerCRIUHung: runc's CRIU stops answering (SIGSTOP) during a
// container checkpoint; with --criu-timeout 4s ckptd kills runc and its
// CRIU, fails with DeadlineExceeded naming the log, and the container runs
// on, unpaused, with nothing listed.
func TestContainerCRIUHung(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address, "--criu-timeout", "4s")
	logPath := x.run("slow", counterScript)
	waitCount(t, logPath, 3)
	wait := d.startCtl("create", "ctr:slow", "--leave-running")
	// Stop every CRIU runc starts until the create answers: the first one
	// seen may be a short probe that ends before a single SIGSTOP lands.
	done := make(chan struct{})
	stopping := make(chan int, 1)
	go func() {
		n := 0
		defer func() { stopping <- n }()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			for _, pid := range criuProcesses() {
				if syscall.Kill(pid, syscall.SIGSTOP) == nil {
					n++
				}
			}
		}
	}()
	stderr, err := wait()
	close(done)
	if <-stopping == 0 {
		t.Fatal("no CRIU of runc's was seen to stop")
	}
	if err == nil {
		t.Fatal("create succeeded although runc's CRIU was stopped")
	}
	t.Logf("hung container create failed: %s", stderr)
	for _, want := range []string{"no answer within 4s", "deadline exceeded", "dump.log"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("error lacks %q: %s", want, stderr)
		}
	}
	d.criuGone(t)
	assertUntouched(t, x, d, "slow", logPath)
}

// TestContainerRestoreOverHalfDeletedTask restores in place over a task
// whose removal was cut short: a ckptd killed while containerd deleted its
// stopped task leaves containerd listing the task, whose shim no longer
// knows it (the campaign saw "task already exists"). The shim's own delete
// makes that state here.
func TestContainerRestoreOverHalfDeletedTask(t *testing.T) {
	x, d, logPath := withRunningContainer(t, "half", counterScript, 2)
	c1 := d.create("ctr:half", "--leave-running")
	x.killTask("half")
	x.shimDelete("half")
	if st := x.status("half"); st != "" {
		t.Fatalf("the half-deleted task reads %q, want unreadable (else this test proves nothing)", st)
	}
	counts, _ := counterLines(readFile(logPath))
	d.must("restore", c1.Name)
	restored := filepath.Join(d.root, "containers", "default", "half", "output.log")
	waitCount(t, restored, counts[len(counts)-1]+2)
	if st := x.status("half"); st != "running" {
		t.Fatalf("restored container is %q", st)
	}
}
