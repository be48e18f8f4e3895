package workload

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary is its own gate, as ckptd is.
func TestMain(m *testing.M) {
	if IsGate(os.Args) {
		Gate(os.Args)
	}
	os.Exit(m.Run())
}

func newSupervisor(t *testing.T) *Supervisor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("workload tests need root (a new PID namespace per launch)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), func() bool { return false }, self)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitExit waits for the supervised pid to end and returns how.
func waitExit(t *testing.T, s *Supervisor, pid int) Exit {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if e, ok := s.ExitOf(pid); ok {
			return e
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d did not end", pid)
	return Exit{}
}

// TestLaunchGate: the command runs only once its PID is recorded, as that
// PID; a failed record ends it unrun.
func TestLaunchGate(t *testing.T) {
	s := newSupervisor(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	spec := Spec{
		Args:    []string{"/bin/sh", "-c", `echo "$$" > ` + marker + `; echo started`},
		LogPath: filepath.Join(dir, "log"),
	}

	refused := errors.New("no room to record it")
	var seen int
	_, err := s.Launch(spec, func(pid int) error {
		seen = pid
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("the command ran before its PID was recorded")
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Launch with a failed record: %v", err)
	}
	if e := waitExit(t, s, seen); e.Code != 1 {
		t.Fatalf("the gate ended %s, want exited 1", e)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the command ran though its record failed")
	}

	var recorded int
	pid, err := s.Launch(spec, func(pid int) error { recorded = pid; return nil })
	if err != nil || pid != recorded {
		t.Fatalf("Launch = %d, %v; recorded %d", pid, err, recorded)
	}
	if e := waitExit(t, s, pid); e.Code != 0 {
		t.Fatalf("the command ended %s", e)
	}
	// pid 1 of its own PID namespace, as the workload always was.
	if b, _ := os.ReadFile(marker); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("the command ran as %q in its namespace, want 1", b)
	}
	if b, _ := os.ReadFile(spec.LogPath); string(b) != "started\n" {
		t.Fatalf("log: %q", b)
	}
}

func TestLaunchRefusals(t *testing.T) {
	s := newSupervisor(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"no-such-command-ckptd"}, "not found in PATH"},
		{[]string{"/nonexistent/cmd"}, "start /nonexistent/cmd: no such file or directory"},
		{[]string{plain}, "permission denied"},
		{[]string{dir}, "not a file"},
	} {
		_, err := s.Launch(Spec{Args: tc.args, LogPath: filepath.Join(dir, "log")}, func(int) error {
			t.Errorf("%v: recorded", tc.args)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Launch(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestGateExecFails: a command that passes the checks and still fails to
// exec ends with 127 and says why in its log.
func TestGateExecFails(t *testing.T) {
	s := newSupervisor(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte{0x7f, 'E', 'L', 'F', 0}, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log")
	pid, err := s.Launch(Spec{Args: []string{bad}, LogPath: log}, func(int) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, s, pid); e.Code != 127 {
		t.Fatalf("ended %s, want exited 127", e)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), fmt.Sprintf("start %s: exec format error", bad)) {
		t.Fatalf("log: %q", b)
	}
}
