package container

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// watched runs fn, a runc checkpoint or restore of container id driven
// through containerd, holding keys (criu.DumpKeys) and under CRIU's
// watchdog. runc and
// its CRIU are the shim's children, not ckptd's: on expiry every runc
// working on id is killed with all its descendants (CRIU and what CRIU
// forked), which makes fn fail; the caller then resumes the container.
func (r *Runtime) watched(ctx context.Context, id, op, logPath string, memBytes int64, keys []string, fn func(context.Context) error) error {
	return r.criu.Exclusive(ctx, keys, func() error {
		timeout := r.criu.Deadline(memBytes)
		done := make(chan error, 1)
		// The call itself may not end before runc does: containerd waits
		// for it, so a cancel only gives up our side of the wait.
		go func() { done <- fn(context.WithoutCancel(ctx)) }()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case err := <-done:
			return err
		case <-t.C:
		}
		last := criu.LastLogLine(logPath)
		killed := killRunc(id)
		r.log.Warn("runc did not finish in time; killed it and its CRIU", "container", id, "op", op, "timeout", timeout, "killed", killed)
		<-done
		return fmt.Errorf("criu %s (through runc): no answer within %s; runc and CRIU were killed: %w: last log line: %q (log: %s)",
			op, timeout, errdefs.ErrDeadlineExceeded, last, logPath)
	})
}

// killRunc kills every runc process whose arguments end with id, and all
// of their descendants at once; it returns how many processes it killed.
func killRunc(id string) int {
	var victims []int
	for _, pid := range proc.PIDs() {
		args, err := proc.Cmdline(pid)
		if err == nil && len(args) > 0 && filepath.Base(args[0]) == "runc" && args[len(args)-1] == id {
			victims = append(victims, proc.Tree(pid)...)
		}
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL) // one already gone is fine
	}
	return len(victims)
}

// endOrphanedCRIU ends the CRIU that runc started for a dump and left
// running when runc died, with everything it forked, and waits until they
// are gone (5 s at most). An orphan is re-parented to the container's
// shim (a subreaper, the parent of the container's init): it is a criu
// process whose parent is shim, or one that holds imagesDir open. A CRIU that outlived the container's resume would put the freezer
// back as it found it, and freeze the container again; one killed leaves
// stopped children, which go too. It returns how many processes it ended.
func endOrphanedCRIU(shim int, imagesDir string) int {
	ended := map[int]bool{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var victims []int
		for _, pid := range proc.PIDs() {
			st, err := proc.ReadStat(pid)
			if err != nil || st.Comm != "criu" || st.State == 'Z' {
				continue
			}
			if (shim > 1 && st.PPID == shim) || proc.HoldsOpen(pid, imagesDir) || ended[st.PPID] {
				victims = append(victims, proc.Tree(pid)...)
			}
		}
		if len(victims) == 0 {
			break
		}
		for _, pid := range victims {
			_ = syscall.Kill(pid, syscall.SIGKILL) // one already gone is fine
			ended[pid] = true
		}
	}
	return len(ended)
}
