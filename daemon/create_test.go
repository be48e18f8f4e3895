package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/workload"
)

// fakeDumper stands in for CRIU: it writes an image and a log, then runs
// the test's hook where CRIU would call the commit while the tree is
// frozen.
type fakeDumper struct {
	beforeCommit func()
	err          error // returned after the commit
}

func (f *fakeDumper) Dump(ctx context.Context, req dumper.Request) (dumper.Result, error) {
	if err := os.WriteFile(filepath.Join(req.Dir, "pages-1.img"), []byte("pages"), 0o600); err != nil {
		return dumper.Result{}, err
	}
	for _, f := range []string{dumper.LogFile, dumper.StatsFile} {
		if err := os.WriteFile(filepath.Join(req.WorkDir, f), []byte("log"), 0o600); err != nil {
			return dumper.Result{}, err
		}
	}
	if f.beforeCommit != nil {
		f.beforeCommit()
	}
	if err := req.Commit(); err != nil {
		return dumper.Result{}, err
	}
	return dumper.Result{}, f.err
}

func newTestDaemon(t *testing.T, dm Dumper) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("daemon tests need root (a child subreaper, /proc of other processes)")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(context.Background(), t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sup, err := workload.NewSupervisor(log, func() bool { return false }, "/nonexistent/gate")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(context.Background(), Parts{Log: log, Store: st, Dumper: dm, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	p := exec.Command("sleep", "60")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	return p
}

// reusePID ends p and starts another process under its PID, as the kernel
// does once PIDs wrap around (here by setting ns_last_pid).
func reusePID(t *testing.T, p *exec.Cmd) *exec.Cmd {
	t.Helper()
	pid := p.Process.Pid
	// Start times count clock ticks (10 ms): a PID reused within the same
	// tick would look like the same process. Real reuse needs the PID space
	// to wrap around, which takes far longer.
	time.Sleep(30 * time.Millisecond)
	p.Process.Kill()
	p.Wait()
	for range 20 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0o600); err != nil {
			t.Fatalf("set ns_last_pid: %v", err)
		}
		q := startSleep(t)
		if q.Process.Pid == pid {
			return q
		}
		q.Process.Kill()
		q.Wait()
	}
	t.Fatalf("could not start a process under pid %d (something else took it each time)", pid)
	return nil
}

// TestCreateRefusesReusedPID: the target ends and its PID goes to another
// process between resolution and the freeze. The check inside the frozen
// window must refuse it: nothing published, the newcomer untouched.
func TestCreateRefusesReusedPID(t *testing.T) {
	p := startSleep(t)
	var q *exec.Cmd
	dm := &fakeDumper{beforeCommit: func() { q = reusePID(t, p) }}
	d := newTestDaemon(t, dm)
	ctx := context.Background()
	_, err := d.Create(ctx, CreateRequest{Target: strconv.Itoa(p.Process.Pid)})
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("create over a reused PID: %v", err)
	}
	if cs, _ := d.List(ctx, ""); len(cs) != 0 {
		t.Errorf("a checkpoint of the newcomer was published: %+v", cs[0])
	}
	if !proc.Alive(q.Process.Pid, 0) {
		t.Error("the newcomer was hurt")
	}
}

// TestCreateFailureKeepsOnlyTheLog: a dump that fails after the commit
// keeps the published checkpoint and says so; one that fails before it
// leaves nothing listed, nothing staged, and its CRIU log in dumps/.
func TestCreateFailureKeepsOnlyTheLog(t *testing.T) {
	p := startSleep(t)
	ctx := context.Background()
	dm := &fakeDumper{err: errors.New("CRIU failed after the commit")}
	d := newTestDaemon(t, dm)
	_, err := d.Create(ctx, CreateRequest{Target: strconv.Itoa(p.Process.Pid), Name: "late"})
	if err == nil || !errors.Is(err, dm.err) {
		t.Fatalf("create: %v", err)
	}
	if c, err := d.store.Get(ctx, "late"); err != nil {
		t.Errorf("checkpoint committed before the failure was dropped: %v", err)
	} else if err := d.store.Verify(ctx, c); err != nil {
		t.Error(err)
	}

	dm.err, dm.beforeCommit = nil, func() { p.Process.Kill(); p.Wait() }
	_, err = d.Create(ctx, CreateRequest{Target: strconv.Itoa(p.Process.Pid), Name: "early"})
	if err == nil {
		t.Fatal("create of a target that died while frozen succeeded")
	}
	if _, err := d.store.Get(ctx, "early"); !errdefs.IsNotFound(err) {
		t.Errorf("failed checkpoint listed: %v", err)
	}
	l := d.store.Layout()
	if left, _ := os.ReadDir(l.StagingDir()); len(left) != 0 {
		t.Errorf("staging keeps %d entries", len(left))
	}
	logs, _ := filepath.Glob(filepath.Join(l.DumpsDir(), "*", dumper.LogFile))
	if len(logs) != 2 {
		t.Errorf("CRIU logs kept in dumps/: %v, want the two failures'", logs)
	}
}
