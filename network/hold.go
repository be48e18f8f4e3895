package network

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ckptd/ckptd/proc"
)

// holdRule drops what arrives on a workload's interface. CRIU locks a
// namespace it makes itself while it dumps or restores connections in
// repair mode; a workload's own namespace is external to its images, so
// ckptd locks it: a peer's retransmission must neither reach a socket in
// repair nor meet a namespace with the address and no socket yet, whose
// kernel would reset it. The rule drops before the kernel looks for a
// socket, so nothing answers.
var holdRule = []string{"INPUT", "-i", "eth0", "-m", "comment", "--comment", "ckptd hold", "-j", "DROP"}

// Hold locks the namespace at nsPath until Release. Holding one that is
// held adds nothing.
func Hold(nsPath string) error {
	if held(nsPath) {
		return nil
	}
	return iptablesIn(nsPath, append([]string{"-I"}, holdRule...)...)
}

// Release lets traffic reach the namespace at nsPath again; one that is
// not held, or gone, is not an error.
func Release(nsPath string) error {
	if !held(nsPath) {
		return nil
	}
	return iptablesIn(nsPath, append([]string{"-D"}, holdRule...)...)
}

func held(nsPath string) bool {
	return iptablesIn(nsPath, append([]string{"-C"}, holdRule...)...) == nil
}

// iptablesIn runs iptables in the namespace at nsPath, as a child whose
// exit ckptd waits for itself (see ownedExec).
func iptablesIn(nsPath string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath, "iptables", "-w", "-t", "filter"}, args...)...)
	cmd.Stderr = &stderr
	if err := proc.StartGroup(cmd); err != nil {
		return err
	}
	err := cmd.Wait()
	proc.Disown(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("iptables %s in %s: %w: %s", strings.Join(args, " "), nsPath, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
