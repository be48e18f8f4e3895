package criu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/proc"
)

// Offsets of DR0 and DR7 in x86_64's struct user (u_debugreg), for
// PTRACE_POKEUSER, and DR7's local-enable bit for DR0 (execute, 1 byte).
const (
	dr0Offset   = 848
	dr7Offset   = 904
	dr7EnableL0 = 1
	atEntry     = 9 // AT_ENTRY in auxv
)

// probeProgram is a dynamically linked program every Debian has: its
// entry point runs only after the dynamic loader, so a breakpoint there
// is hit after the tracer resumes it.
const probeProgram = "/bin/true"

// HardwareBreakpoints tells whether x86 hardware breakpoints fire on this
// host, as CRIU 4.2's kerndat probe asks: CRIU uses them to stop a task
// after its parasite's sigreturn and, where they never fire, takes a
// slower path (CRIU 4.1 hung there). It traces probeProgram from its
// exec, sets DR0 on its entry point and resumes it: a SIGTRAP stop means
// they work, an exit means the breakpoint never fired.
func HardwareBreakpoints() (bool, error) {
	return probeBreakpoint(func(entry uint64) uint64 { return entry })
}

// probeBreakpoint sets DR0 on at(entry point) of a traced probeProgram and
// reports whether it stopped there.
func probeBreakpoint(at func(entry uint64) uint64) (bool, error) {
	if runtime.GOARCH != "amd64" {
		return false, fmt.Errorf("breakpoint probe: not on %s", runtime.GOARCH)
	}
	// ptrace requests must come from the thread that started the tracee.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(probeProgram)
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := proc.StartGroup(cmd); err != nil {
		return false, fmt.Errorf("breakpoint probe: %w", err)
	}
	pid := cmd.Process.Pid
	defer func() {
		_ = proc.KillGroup(pid)
		_, _ = cmd.Process.Wait()
		proc.Disown(pid)
	}()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return false, fmt.Errorf("breakpoint probe: tracee did not stop at exec (%v, status %#x)", err, ws)
	}
	entry, err := auxvEntry(pid)
	if err != nil {
		return false, fmt.Errorf("breakpoint probe: %w", err)
	}
	if err := pokeUser(pid, dr0Offset, at(entry)); err != nil {
		return false, fmt.Errorf("breakpoint probe: set DR0: %w", err)
	}
	if err := pokeUser(pid, dr7Offset, dr7EnableL0); err != nil {
		return false, fmt.Errorf("breakpoint probe: set DR7: %w", err)
	}
	if err := unix.PtraceCont(pid, 0); err != nil {
		return false, fmt.Errorf("breakpoint probe: continue: %w", err)
	}
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		return false, fmt.Errorf("breakpoint probe: wait: %w", err)
	}
	switch {
	case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP:
		return true, nil
	case ws.Exited():
		return false, nil
	}
	return false, fmt.Errorf("breakpoint probe: unexpected status %#x", ws)
}

func pokeUser(pid int, off uintptr, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, err := unix.PtracePokeUser(pid, off, b[:])
	return err
}

// auxvEntry reads AT_ENTRY, the program's entry point, from pid's auxv.
func auxvEntry(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid))
	if err != nil {
		return 0, err
	}
	for i := 0; i+16 <= len(b); i += 16 {
		if binary.LittleEndian.Uint64(b[i:]) == atEntry {
			return binary.LittleEndian.Uint64(b[i+8:]), nil
		}
	}
	return 0, errors.New("no AT_ENTRY in auxv")
}
