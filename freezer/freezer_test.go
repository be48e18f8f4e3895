package freezer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/proc"
)

// startTree starts a shell with two children, all ended when the test ends.
func startTree(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for len(proc.Tree(cmd.Process.Pid)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the tree did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd.Process.Pid
}

func testHierarchy(t *testing.T) *Hierarchy {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("the freezer tests need root (cgroups)")
	}
	h, err := Open(fmt.Sprintf("ckptd-test-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := h.Sweep(context.Background()); err != nil {
			t.Error(err)
		}
		os.Remove(h.dir)
	})
	return h
}

// frozen counts the tree's tasks in uninterruptible sleep, as frozen
// tasks are shown; the tree's shell and sleeps otherwise sleep
// interruptibly.
func frozen(t *testing.T, root int) (n int) {
	t.Helper()
	for _, pid := range proc.Tree(root) {
		if st, err := proc.ReadStat(pid); err == nil && st.State == 'D' {
			n++
		}
	}
	return n
}

func TestFreezeThawDissolve(t *testing.T) {
	root := startTree(t)
	h := testHierarchy(t) // its cleanup, first, thaws what a failure left frozen
	ctx := context.Background()
	c, err := h.Join(ctx, "g/a", root)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := c.Tasks()
	if err != nil || len(tasks) != 3 {
		t.Fatalf("cgroup has %v (%v), want the tree's 3 processes", tasks, err)
	}
	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if n := frozen(t, root); n != 3 {
		t.Fatalf("%d of 3 tasks frozen", n)
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	if n := frozen(t, root); n != 0 {
		t.Fatalf("%d tasks still frozen after thaw", n)
	}
	if err := c.Dissolve(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Path); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s still there: %v", c.Path, err)
	}
	if at, err := h.cgroupOf(root); err != nil || at != c.origin {
		t.Fatalf("root is in %q (%v), want it back in %q", at, err, c.origin)
	}
}

func TestSweepThawsLeftovers(t *testing.T) {
	root := startTree(t)
	h := testHierarchy(t) // its cleanup, first, thaws what a failure left frozen
	ctx := context.Background()
	c, err := h.Join(ctx, "g/a", root)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	// A new ckptd on the same root finds the frozen tree.
	again, err := Open(filepath.Base(h.dir))
	if err != nil {
		t.Fatal(err)
	}
	freed, err := again.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 3 {
		t.Fatalf("sweep freed %v, want the tree's 3 processes", freed)
	}
	if n := frozen(t, root); n != 0 {
		t.Fatalf("%d tasks still frozen after the sweep", n)
	}
	if _, err := os.Stat(filepath.Dir(c.Path)); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s: %v", filepath.Dir(c.Path), err)
	}
}

func TestKillFrozen(t *testing.T) {
	root := startTree(t)
	h := testHierarchy(t) // its cleanup, first, thaws what a failure left frozen
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.Join(ctx, "g/a", root)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if tasks, _ := c.Tasks(); len(tasks) != 0 {
		t.Fatalf("tasks %v outlived Kill", tasks)
	}
	if err := c.Dissolve(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestJoinRefusesASplitTree(t *testing.T) {
	root := startTree(t)
	h := testHierarchy(t) // its cleanup, first, thaws what a failure left frozen
	ctx := context.Background()
	other, err := h.Join(ctx, "other", proc.Tree(root)[1])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Dissolve(ctx)
	if _, err := h.Join(ctx, "g/a", root); err == nil {
		t.Fatal("joined a tree whose tasks are in two cgroups")
	}
}
