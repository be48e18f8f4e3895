package criu

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Launcher starts a CRIU helper somewhere other than as ckptd's own child:
// a shell job's restore runs CRIU inside its new terminal's session, whose
// leader (the terminal's holder) outlives CRIU. It starts argv with files
// as descriptors 3, 4, ..., in a process group of its own, and returns
// its PID; the launcher reaps it.
type Launcher func(argv []string, files []*os.File) (pid int, err error)

// launch starts a helper through l and follows it by a pidfd, as start
// does a child of ours.
func (h *Helpers) launch(argv []string, files []*os.File, l Launcher) (*group, error) {
	h.mu.Lock()
	h.inFlight++
	h.mu.Unlock()
	pid, err := l(argv, files)
	if err != nil {
		h.done()
		return nil, err
	}
	g := &group{h: h, name: fmt.Sprintf("%s %s", argv[0], argv[1]), pgid: pid, exited: make(chan struct{}),
		kill: func() error { return unix.Kill(pid, unix.SIGKILL) }}
	if err := h.record(pid); err != nil {
		h.log.Warn("record criu process group", "pgid", pid, "err", err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		// Gone already (ESRCH), and reaped by its launcher.
		close(g.exited)
		return g, nil
	}
	go func() {
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		g.err = fmt.Errorf("exited (its status is its launcher's)")
		close(g.exited)
	}()
	return g, nil
}
