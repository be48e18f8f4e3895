package criu

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/proc"
)

// lockMark is the packet mark CRIU's own traffic carries; its rules that
// hold a connection during a checkpoint drop everything else.
const lockMark = "0xc114"

// UnlockTCP removes the rules CRIU left to hold the connections of the
// images in dir: a restore with --tcp-close does not restore them in
// repair mode, and CRIU 4.2 then leaves their rules (one each way, in the
// filter table of the namespace CRIU ran in) for good.
func UnlockTCP(dir string) error {
	conns, err := images.TCPConnections(dir)
	if err != nil || len(conns) == 0 {
		return err
	}
	out, err := run("iptables-save", "-t", "filter")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, lockMark) || !holds(line, conns) {
			continue
		}
		args := append([]string{"-t", "filter", "-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
		if _, err := run("iptables", args...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// holds says whether a lock rule names one of conns, either way.
func holds(rule string, conns []images.TCPPorts) bool {
	for _, c := range conns {
		for _, p := range [][2]uint32{{c.Src, c.Dst}, {c.Dst, c.Src}} {
			if strings.Contains(rule, fmt.Sprintf("--sport %d --dport %d ", p[0], p[1])) {
				return true
			}
		}
	}
	return false
}

// run runs a helper as a child whose exit this process waits for (the
// orphan reaper leaves it alone) and returns its output.
func run(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := proc.StartGroup(cmd); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	err := cmd.Wait()
	proc.Disown(cmd.Process.Pid)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
