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
	// criuCalls counts CRIU invocations in flight: their `criu` children
	// are reaped by go-criu, so the orphan reaper must leave them alone.
	criuCalls int
}

// NewSupervisor makes the calling process a child subreaper.
func NewSupervisor(log *slog.Logger) (*Supervisor, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	return &Supervisor{log: log, tracked: map[int]bool{}, exits: map[int]Exit{}}, nil
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

// CRIUCall marks a CRIU invocation in flight; call the returned func when
// it is over.
func (s *Supervisor) CRIUCall() (done func()) {
	s.mu.Lock()
	s.criuCalls++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.criuCalls--
		s.mu.Unlock()
	}
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
		s.reapOnce()
	}
}

func (s *Supervisor) reapOnce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	self := os.Getpid()
	for _, pid := range proc.Children(self) {
		st, err := proc.ReadStat(pid)
		if err != nil || st.PPID != self || st.State != 'Z' || s.tracked[pid] {
			continue
		}
		if st.Comm == "criu" && s.criuCalls > 0 {
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
