package proc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrGone is returned when the process a PID and start time named has
// ended, or its PID now belongs to another process.
var ErrGone = errors.New("process is gone (its PID may have been reused)")

// Signal sends sig to the process pid names only if it is still the one
// that started at startTime (0: any). A pidfd pins the process between the
// check and the signal, so a PID reused meanwhile is never hit.
func Signal(pid int, startTime uint64, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !Alive(pid, startTime) {
		return fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pid %d: %w", pid, ErrGone)
		}
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}
