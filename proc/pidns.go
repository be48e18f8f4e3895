package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ErrNotInNamespace says a PID names no process in the viewer's PID
// namespace.
var ErrNotInNamespace = errors.New("no such process in the caller's PID namespace")

// HostPID returns the PID, in this process's PID namespace, of the
// process that viewer (a PID here) sees as pid. A viewer in a nested
// namespace (a container, zdtm's test namespaces) means its own PID pid,
// which here is another process, or a kernel thread.
func HostPID(viewer, pid int) (int, error) {
	own, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0, err
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", viewer))
	if err != nil {
		return 0, fmt.Errorf("the caller's PID namespace: %w", err)
	}
	if own == theirs {
		return pid, nil
	}
	// NSpid lists a process's PIDs from this namespace down to its own;
	// the viewer's namespace is its last level.
	level := len(statusFields(viewer, "NSpid:")) - 1
	if level < 1 {
		return 0, fmt.Errorf("the caller's PID namespace is not below ckptd's: %w", ErrNotInNamespace)
	}
	want := strconv.Itoa(pid)
	for _, p := range PIDs() {
		ns := statusFields(p, "NSpid:")
		if len(ns) <= level || ns[level] != want {
			continue
		}
		// In the viewer's namespace, or the init of one nested in it.
		if inNamespace(p, theirs) || inNamespace(parentOf(p), theirs) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("process %d: %w", pid, ErrNotInNamespace)
}

func inNamespace(pid int, ns string) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err == nil && link == ns
}

func parentOf(pid int) int {
	st, err := ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.PPID
}
