package proc

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseExecFrom marks every open descriptor from min up close-on-exec.
// Descriptors a parent leaked into ckptd would otherwise pass on to every
// workload it starts and be dumped with it (and a file opened in another
// mount namespace cannot be restored there).
func CloseExecFrom(min int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < min {
			continue
		}
		// The directory's own descriptor is closed by now: EBADF is fine.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return err
		}
	}
	return nil
}
