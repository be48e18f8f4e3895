package term

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
)

// readRunPID reads the holder's report on the Run it started: its PID,
// or why it could not start it. w is our copy of the report's write end;
// holderLog is the holder's own log, for the user.
func readRunPID(report, w *os.File, holderLog string) (int, error) {
	w.Close() // the holder's copy is the last: its exit ends the report
	_ = report.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(report)
	if err != nil {
		return 0, fmt.Errorf("the terminal holder did not report its program's start: %v: %w", err, errdefs.ErrUnavailable)
	}
	line := strings.TrimSpace(string(b))
	if line == "" {
		return 0, fmt.Errorf("the terminal holder did not report its program's start: it ended first (its log: %s): %w", holderLog, errdefs.ErrUnavailable)
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, fmt.Errorf("the terminal holder could not start %s", msg)
	}
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("the terminal holder reported %q for its program's start: %w", line, errdefs.ErrUnavailable)
	}
	return pid, nil
}

// Lead makes slave the controlling terminal of the calling process, which
// must lead a session of its own (the holder), and starts argv as its
// child on it (see Run); report gets the child's PID or why it failed. The
// returned wait reaps the child.
func Lead(slave, report *os.File, argv []string, files []*os.File, stderr io.Writer) (wait func() error, err error) {
	defer report.Close()
	defer func() {
		if err != nil {
			fmt.Fprintf(report, "error: %v\n", err)
		}
	}()
	if len(argv) == 0 {
		return nil, fmt.Errorf("no program to run")
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return nil, fmt.Errorf("%s: take the terminal as controlling terminal: %w", argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, stderr, stderr
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	slave.Close() // the terminal stays ours as controlling terminal
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	fmt.Fprintf(report, "%d\n", cmd.Process.Pid)
	return cmd.Wait, nil
}
