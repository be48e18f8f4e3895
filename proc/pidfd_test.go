package proc

import (
	"errors"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// A signal for a process whose start time no longer matches (its PID was
// reused) is refused and reaches nobody.
func TestSignalRefusesAnotherProcess(t *testing.T) {
	p := exec.Command("sleep", "60")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { p.Process.Kill(); p.Wait() }()
	st, err := ReadStat(p.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := Signal(p.Process.Pid, st.StartTime+1, unix.SIGKILL); !errors.Is(err, ErrGone) {
		t.Fatalf("signal to a reused PID: %v", err)
	}
	if !Alive(p.Process.Pid, st.StartTime) {
		t.Fatal("the process the refused signal named was hit")
	}
	if err := Signal(p.Process.Pid, st.StartTime, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	if err := Signal(p.Process.Pid, st.StartTime, unix.SIGKILL); !errors.Is(err, ErrGone) {
		t.Errorf("signal to an ended process: %v", err)
	}
}
