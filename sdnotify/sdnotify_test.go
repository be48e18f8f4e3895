package sdnotify

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	for _, socket := range []string{path, "@ckptd-sdnotify-test-" + filepath.Base(t.TempDir())} {
		name := socket
		if strings.HasPrefix(name, "@") {
			name = "\x00" + name[1:]
		}
		l := listen(t, name)
		t.Setenv("NOTIFY_SOCKET", socket)
		n := FromEnv()
		if !n.Enabled() {
			t.Fatal("not enabled with NOTIFY_SOCKET set")
		}
		if err := n.Notify("serving /run/ckptd.sock", Ready); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		k, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:k]); got != "READY=1\nSTATUS=serving /run/ckptd.sock\n" {
			t.Fatalf("%s: got %q", socket, got)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if n := FromEnv(); n.Enabled() || n.Notify("", Ready) != nil {
		t.Fatal("a notifier without a socket sent or failed")
	}
}

// TestSystemStoppingNotHere: without a service manager, and on this host
// (systemd installed, not running: systemctl says "offline"), no stop is
// a shutdown. The "stopping" answer needs a real shutdown to see.
func TestSystemStoppingNotHere(t *testing.T) {
	ctx := context.Background()
	if (Notifier{}).SystemStopping(ctx) {
		t.Fatal("a ckptd no service manager started saw a shutdown")
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Fatalf("systemctl not found (make deps installs systemd): %v", err)
	}
	out, _ := exec.Command("systemctl", "is-system-running").Output()
	if state := strings.TrimSpace(string(out)); state == "stopping" {
		t.Fatalf("the system is shutting down (%q): this test cannot tell", state)
	}
	if (Notifier{socket: filepath.Join(t.TempDir(), "notify.sock")}).SystemStopping(ctx) {
		t.Fatal("a stop outside a shutdown was taken for one")
	}
}
