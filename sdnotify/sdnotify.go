// Package sdnotify tells the service manager how ckptd is doing, as
// systemd's sd_notify(3) does: one datagram of NAME=VALUE lines to the
// unix socket $NOTIFY_SOCKET names (an abstract one when it starts
// with '@').
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// States ckptd sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notifier sends to one socket; the zero value, with no socket, sends
// nothing.
type Notifier struct{ socket string }

// FromEnv reads $NOTIFY_SOCKET and unsets it, so that nothing ckptd starts
// (workloads, CRIU) takes ckptd's place with the service manager.
func FromEnv() Notifier {
	s := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return Notifier{socket: s}
}

// Enabled says whether a service manager listens.
func (n Notifier) Enabled() bool { return n.socket != "" }

// Notify sends states, with a STATUS line when status is not empty.
func (n Notifier) Notify(status string, states ...string) error {
	if n.socket == "" {
		return nil
	}
	addr := n.socket
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify the service manager: %w", err)
	}
	defer c.Close()
	msg := strings.Join(states, "\n")
	if status != "" {
		msg += "\nSTATUS=" + strings.ReplaceAll(status, "\n", " ")
	}
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return fmt.Errorf("notify the service manager: %w", err)
	}
	return nil
}

// SystemStopping says whether the system is shutting down (systemd's
// "stopping" state, as systemctl is-system-running reports it). It is
// false when no service manager started ckptd, or when systemctl does
// not answer within ctx.
func (n Notifier) SystemStopping(ctx context.Context) bool {
	if !n.Enabled() {
		return false
	}
	// It exits non-zero for every state but "running": read what it says.
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	return strings.TrimSpace(string(out)) == "stopping"
}
