package term

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holder builds the real ckptd-term and returns a Spawn that starts it as
// ckptd's supervisor does: in a session of its own, reaped when it ends.
func holder(t *testing.T) (string, Spawn) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ckptd-term")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ckptd-term").CombinedOutput(); err != nil {
		t.Fatalf("build ckptd-term: %v\n%s", err, out)
	}
	spawn := func(argv []string, stderr *os.File, files []*os.File) (int, error) {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return 0, err
		}
		defer null.Close()
		p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
			Files: append([]*os.File{null, null, stderr}, files...),
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			return 0, err
		}
		t.Cleanup(func() { p.Kill(); p.Wait() })
		return p.Pid, nil
	}
	return bin, spawn
}

// TestRunLeadsSession: a Run starts in the holder's session, with the new
// terminal as its controlling terminal and stdin and the files it was
// given, and the session ends with it.
func TestRunLeadsSession(t *testing.T) {
	bin, spawn := holder(t)
	dir := t.TempDir()
	sock, logPath := filepath.Join(dir, "tty.sock"), filepath.Join(dir, "out.log")
	script := `echo "sid=$(cut -d' ' -f6 /proc/$$/stat) tty=$(tty) fd3=$(cat <&3)"`
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("given")
	w.Close()
	s, err := Start(bin, sock, logPath, Options{Size: Size{Rows: 24, Cols: 80}, Run: &Run{Argv: []string{"/bin/sh", "-c", script}, Files: []*os.File{r}}}, spawn)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.Slave.Close()
	if s.RunPID <= 0 || s.RunPID == s.HolderPID {
		t.Fatalf("Run's PID is %d (holder %d)", s.RunPID, s.HolderPID)
	}
	want := fmt.Sprintf("sid=%d tty=/dev/pts/", s.HolderPID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The Run's stdout is the holder's log: CRIU's, not the session's.
		b, _ := os.ReadFile(filepath.Join(dir, HolderLog))
		if strings.Contains(string(b), want) && strings.Contains(string(b), "fd3=given") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder's log lacks %q and fd3=given:\n%s", want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); os.IsNotExist(err) {
			break // the holder ended with its session
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder outlived its session")
		}
	}
}

// TestRunRefused: a Run that cannot start fails Start with the holder's
// reason, and the holder does not stay.
func TestRunRefused(t *testing.T) {
	bin, spawn := holder(t)
	dir := t.TempDir()
	_, err := Start(bin, filepath.Join(dir, "tty.sock"), filepath.Join(dir, "out.log"), Options{Run: &Run{Argv: []string{"/nonexistent/criu", "swrk"}}}, spawn)
	if err == nil || !strings.Contains(err.Error(), "could not start /nonexistent/criu") {
		t.Fatalf("Start = %v, want the holder's refusal", err)
	}
}
