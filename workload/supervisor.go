package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/proc"
)

// Exit is how a supervised process ended.
type Exit struct {
	Code   int
	Signal string
	At     time.Time
}

func (e Exit) String() string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return "exited " + strconv.Itoa(e.Code)
}

// Supervisor waits for the children ckptd owns and reaps orphans.
type Supervisor struct {
	log     *slog.Logger
	mu      sync.Mutex
	tracked map[int]bool
	exits   map[int]Exit
	// criuBusy reports whether a CRIU of ours runs; while none does, a
	// child of ours still named criu is a leftover (see endStrays).
	criuBusy func() bool
	gate     string // the binary that starts as a gate (see Gate)
	// ended, when set, hears of each tracked child's end (outside mu).
	ended func(pid int)
}

// OnEnd has f called, in its own goroutine, when a tracked child ends:
// what a workload held outside itself (its network) is let go then.
func (s *Supervisor) OnEnd(f func(pid int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = f
}

// NewSupervisor makes the calling process a child subreaper. criuBusy
// reports whether a CRIU process of this ckptd is running; gate is a
// binary whose main calls Gate when IsGate (ckptd's own).
func NewSupervisor(log *slog.Logger, criuBusy func() bool, gate string) (*Supervisor, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	return &Supervisor{log: log, tracked: map[int]bool{}, exits: map[int]Exit{}, criuBusy: criuBusy, gate: gate}, nil
}

// Adopt tracks pid, a child of this process (a restored root). Call it
// before the child can run, so its exit is never missed.
func (s *Supervisor) Adopt(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trackLocked(p)
	return nil
}

func (s *Supervisor) trackLocked(p *os.Process) {
	s.tracked[p.Pid] = true
	delete(s.exits, p.Pid) // the exit of an earlier process with this PID
	go func() {
		st, err := p.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ended != nil {
			go s.ended(p.Pid)
		}
		delete(s.tracked, p.Pid)
		if err != nil {
			s.log.Error("wait for child", "pid", p.Pid, "err", err)
			return
		}
		s.exits[p.Pid] = exitOf(st)
		s.log.Info("child ended", "pid", p.Pid, "status", s.exits[p.Pid].String())
	}()
}

// ExitOf returns how pid ended, if it was a supervised child that did.
func (s *Supervisor) ExitOf(pid int) (Exit, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exits[pid]
	return e, ok
}

// ReapOrphans runs until ctx ends, reaping zombie children nobody waits for.
func (s *Supervisor) ReapOrphans(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	tick := time.NewTicker(5 * time.Second) // SIGCHLDs coalesce; sweep now and then
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
		s.endStrays()
		s.reapOnce()
	}
}

// endStrays kills what a killed CRIU left among ckptd's children while no
// CRIU of ours runs: tasks of a half-restored tree (restored roots are
// ckptd's children, and a task keeps CRIU's name until its restore
// completes) and probe children a dead CRIU left stopped. A completed
// restore's root is tracked and named as before its checkpoint.
func (s *Supervisor) endStrays() {
	if s.criuBusy == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Under the spawn lock no CRIU can start: one that started before is
	// counted busy (it is counted before it is started) or owned.
	proc.WithSpawnLock(func() {
		if s.criuBusy() {
			return
		}
		self := os.Getpid()
		for _, pid := range proc.Children(self) {
			st, err := proc.ReadStat(pid)
			if err != nil || st.PPID != self || st.State == 'Z' || st.Comm != "criu" || s.tracked[pid] || proc.Owned(pid) {
				continue
			}
			s.endTree(pid)
		}
	})
}

func (s *Supervisor) endTree(pid int) {
	tree := proc.Tree(pid)
	s.log.Warn("ending processes a failed CRIU left behind", "pids", tree, "processes", proc.Describe(stats(tree)))
	for _, p := range tree {
		if err := unix.Kill(p, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			s.log.Error("kill CRIU leftover", "pid", p, "err", err)
		}
	}
}

// EndStrays runs the leftover sweep and the reaper now; a CRIU call that
// failed calls it so that nothing of it outlives the request.
func (s *Supervisor) EndStrays() {
	s.endStrays()
	s.reapOnce()
}

func stats(pids []int) []proc.Stat {
	out := make([]proc.Stat, 0, len(pids))
	for _, p := range pids {
		if st, err := proc.ReadStat(p); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func (s *Supervisor) reapOnce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	proc.WithSpawnLock(func() { s.reapLocked() })
}

func (s *Supervisor) reapLocked() {
	self := os.Getpid()
	for _, pid := range proc.Children(self) {
		st, err := proc.ReadStat(pid)
		if err != nil || st.PPID != self || st.State != 'Z' || s.tracked[pid] || proc.Owned(pid) {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil && !errors.Is(err, unix.ECHILD) {
			s.log.Error("reap orphan", "pid", pid, "err", err)
			continue
		}
		if got == pid {
			s.log.Debug("reaped orphan", "pid", pid, "comm", strings.TrimSpace(st.Comm))
		}
	}
}

func exitOf(st *os.ProcessState) Exit {
	e := Exit{Code: st.ExitCode(), At: time.Now()}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = unix.SignalName(ws.Signal())
	}
	return e
}
