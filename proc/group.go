package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// owned holds the PIDs of children whose exit their starter waits for
// itself; the orphan reaper leaves them alone. Guarded by SpawnMu, so that
// a child cannot exit and be reaped between its start and its registration.
var owned = map[int]bool{}

// StartGroup starts cmd in a new process group of its own (its PID is the
// group's ID), so that it and every child it leaves behind can be ended at
// once with KillGroup. The caller owns its exit: it must call Disown after
// cmd.Wait.
func StartGroup(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	SpawnMu.Lock()
	defer SpawnMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	owned[cmd.Process.Pid] = true
	return nil
}

// Disown hands pid back to the orphan reaper's rules once its starter has
// waited for it.
func Disown(pid int) {
	SpawnMu.Lock()
	delete(owned, pid)
	SpawnMu.Unlock()
}

// Owned reports whether a starter waits for pid itself. The caller holds
// SpawnMu (see WithSpawnLock).
func Owned(pid int) bool { return owned[pid] }

// WithSpawnLock runs fn while no child can be started or registered.
func WithSpawnLock(fn func()) {
	SpawnMu.Lock()
	defer SpawnMu.Unlock()
	fn()
}

// KillGroup sends SIGKILL to every process of group pgid. A group that is
// already gone is not an error.
func KillGroup(pgid int) error {
	if pgid <= 1 {
		return fmt.Errorf("refusing to kill process group %d", pgid)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	return nil
}

// GroupMembers returns the live (not zombie) processes of group pgid.
func GroupMembers(pgid int) []Stat {
	var out []Stat
	for _, pid := range PIDs() {
		st, err := ReadStat(pid)
		if err != nil || st.PGID != pgid || st.State == 'Z' || st.State == 'X' {
			continue
		}
		out = append(out, st)
	}
	return out
}

// EndGroup kills group pgid until no live member is left or timeout passes;
// it returns the members still alive then.
func EndGroup(pgid int, timeout time.Duration) ([]Stat, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := KillGroup(pgid); err != nil {
			return nil, err
		}
		left := GroupMembers(pgid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Describe renders processes for a log or an error: pid, state, wait
// channel and command name.
func Describe(sts []Stat) string {
	parts := make([]string, 0, len(sts))
	for _, st := range sts {
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", st.PID))
		parts = append(parts, fmt.Sprintf("%d %s %c %s", st.PID, st.Comm, st.State, strings.TrimSpace(string(wchan))))
	}
	return strings.Join(parts, "; ")
}
