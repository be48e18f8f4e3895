package main

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stateOf is the state directory of the ckptd of c's test: one per test
// run, named after the test's dump directory (dump/zdtm/static/NAME/PID),
// which holds every images directory of that run.
func stateOf(c call) string {
	abs, _ := filepath.Abs(filepath.Dir(c.dir))
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(env("ZDTM_CKPTD_STATE", "/tmp/ckptd-zdtm"), fmt.Sprintf("%x", sum[:6]))
}

// socketOf is that ckptd's API socket (short: a unix socket path has
// 108 bytes).
func socketOf(c call) string { return filepath.Join(stateOf(c), "sock") }

// startDaemon starts the ckptd of c's test unless it answers already.
func startDaemon(c call) error {
	sock := socketOf(c)
	if conn, err := net.Dial("unix", sock); err == nil {
		conn.Close()
		return nil
	}
	state := stateOf(c)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	os.Remove(sock)
	logf, err := os.OpenFile(filepath.Join(state, "ckptd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(env("ZDTM_CKPTD", "ckptd"), "--root", filepath.Join(state, "root"), "--socket", sock)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ckptd: %w", err)
	}
	// zdtm's namespace init reaps it; nothing here waits for it.
	if err := cmd.Process.Release(); err != nil {
		return err
	}
	for range 100 {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("ckptd did not answer on %s within 5 s (log: %s)", sock, filepath.Join(state, "ckptd.log"))
}
