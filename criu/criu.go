// Package criu finds and checks the CRIU binary and turns its failures into
// errors that carry the CRIU log path and the log's last error lines.
package criu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// MinVersion is the oldest CRIU ckptd accepts (4.2.1): 3.x fails on
// current kernels ("vdso: Unexpected rt vDSO area bounds"), 4.1 hangs in
// every dump and restore where hardware breakpoints never fire and cannot
// dump TCP or UDP sockets on kernels >= 6.16.
const MinVersion = 40201

// Binary is a CRIU executable that passed `criu check`.
type Binary struct {
	Path    string
	Version int // major*10000 + minor*100 + sublevel
	// Helpers owns the CRIU processes started through this Binary.
	Helpers *Helpers
	// Timeout bounds every CRIU call; zero scales it with the memory at
	// stake (see Deadline).
	Timeout time.Duration
	// ConfigFile is a CRIU configuration file for every dump and restore
	// that does not name its own.
	ConfigFile string
}

// VersionString renders Version as "4.1.1".
func (b Binary) VersionString() string {
	return fmt.Sprintf("%d.%d.%d", b.Version/10000, b.Version/100%100, b.Version%100)
}

// Locate finds criu (path, or PATH when empty), checks its version and runs
// `criu check`. Every refusal is FailedPrecondition with a clear reason.
func Locate(ctx context.Context, path string, helpers *Helpers) (Binary, error) {
	if path == "" {
		p, err := exec.LookPath("criu")
		if err != nil {
			return Binary{}, fmt.Errorf("criu not found in PATH (run 'make deps'): %w", errdefs.ErrFailedPrecondition)
		}
		path = p
	}
	out, err := Binary{Path: path, Helpers: helpers}.command(ctx, "--version")
	if err != nil {
		return Binary{}, fmt.Errorf("run %s --version: %v: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	v, err := parseVersion(string(out))
	if err != nil {
		return Binary{}, fmt.Errorf("%s: %v: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	b := Binary{Path: path, Version: v, Helpers: helpers}
	if v < MinVersion {
		return b, fmt.Errorf("%s is CRIU %s; ckptd needs %s or newer (run 'make deps'): %w",
			path, b.VersionString(), Binary{Version: MinVersion}.VersionString(), errdefs.ErrFailedPrecondition)
	}
	if out, err := b.command(ctx, "check"); err != nil {
		return b, fmt.Errorf("%s check failed: %s: %w", path, lastLine(string(out)), errdefs.ErrFailedPrecondition)
	}
	return b, nil
}

// parseVersion reads the "Version: 4.1.1" line of `criu --version`.
func parseVersion(out string) (int, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:")
		if !ok {
			continue
		}
		var major, minor, sub int
		n, _ := fmt.Sscanf(strings.TrimSpace(rest), "%d.%d.%d", &major, &minor, &sub)
		if n < 2 {
			return 0, fmt.Errorf("cannot parse CRIU version %q", strings.TrimSpace(rest))
		}
		return major*10000 + minor*100 + sub, nil
	}
	return 0, fmt.Errorf("no Version line in criu --version output")
}

// HasFeature runs `criu check --feature name`. go-criu's FeatureCheck
// reports mem-track present even when the kernel lacks soft-dirty bits,
// so the command line is the reliable source.
func (b Binary) HasFeature(ctx context.Context, name string) (bool, string) {
	out, err := b.command(ctx, "check", "--feature", name)
	return err == nil, lastLine(out)
}

// Exclusive runs fn, which drives CRIU through another program (runc),
// holding keys as Run holds a Call's. It gives up waiting when ctx ends.
func (b Binary) Exclusive(ctx context.Context, keys []string, fn func() error) error {
	release, err := b.Helpers.acquire(ctx, keys)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// Error wraps a CRIU failure with the operation, the log path, and the
// log's last error lines, so the user sees the cause without digging.
func Error(op, logPath string, err error) error {
	if strings.Contains(err.Error(), rlimitNoise) {
		// go-criu reports CRIU's first error line, which on hosts with a low
		// hard RLIMIT_NOFILE is this harmless one; the log tells the cause.
		err = errors.New("operation failed")
	}
	if _, serr := os.Stat(logPath); errors.Is(serr, os.ErrNotExist) {
		return fmt.Errorf("criu %s: %w (no log: CRIU ended before it wrote %s)", op, err, logPath)
	}
	detail := errorLines(logPath, 3)
	if detail != "" {
		return fmt.Errorf("criu %s: %w: %s (log: %s)", op, err, detail, logPath)
	}
	return fmt.Errorf("criu %s: %w (log: %s)", op, err, logPath)
}

// rlimitNoise is an error CRIU logs, and then ignores, when it cannot raise
// its own RLIMIT_NOFILE above the hard limit.
const rlimitNoise = "Can't setup RLIMIT_NOFILE"

// errorLines returns the last n "Error" lines of a CRIU log, joined.
func errorLines(logPath string, n int) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "Error (") && !strings.Contains(l, rlimitNoise) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// LastLogLine is the last line of a CRIU log, which says where a hung or
// killed CRIU was.
func LastLogLine(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	return lastLine(string(b))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
