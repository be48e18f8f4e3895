package network

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/test/nettest"
)

// TestAttachDetach wires a new namespace with Debian's CNI plugins: a
// server inside answers at its address and at its published host port;
// after Detach and RemoveNS nothing is left (address, rules, veth,
// namespace file).
func TestAttachDetach(t *testing.T) {
	state := t.TempDir()
	bridge := fmt.Sprintf("ckt%d", os.Getpid()%100000)
	nettest.KeepHost(t, bridge, "ckptdtest")
	n, err := New(Config{StateDir: state, Name: "ckptdtest", Bridge: bridge, Subnet: "10.78.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	nsDir := filepath.Join(state, "netns")
	ns, err := NewNS(nsDir, "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveNS(ns) })
	ln := listenIn(t, ns, "0.0.0.0:8080")
	go serveEcho(ln)

	ctx := context.Background()
	a, err := n.Attach(ctx, Attachment{ID: "ckptdtest-a", NetNS: ns, Ports: []Port{{HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	echo(t, a.IP+":8080")
	echo(t, "127.0.0.1:18080")
	if _, err := os.Stat(filepath.Join(state, "ipam", "ckptdtest", a.IP)); err != nil {
		t.Errorf("host-local keeps no allocation of %s: %v", a.IP, err)
	}
	if !strings.Contains(iptablesSave(t), "ckptdtest-a") {
		t.Error("no rule names the attachment: this test would not see one left behind")
	}

	if err := n.Detach(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := n.Detach(ctx, a); err != nil {
		t.Errorf("a second detach: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "ipam", "ckptdtest", a.IP)); !os.IsNotExist(err) {
		t.Errorf("the allocation of %s is left: %v", a.IP, err)
	}
	if rules := iptablesSave(t); strings.Contains(rules, "ckptdtest-a") {
		t.Errorf("rules left:\n%s", grepLines(rules, "ckptdtest-a"))
	}
	if out, _ := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link").Output(); strings.Contains(string(out), "eth0") {
		t.Errorf("eth0 is left in the namespace:\n%s", out)
	}
	ln.Close()
	if err := RemoveNS(ns); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
	if err := RemoveNS(ns); err != nil {
		t.Errorf("removing it again: %v", err)
	}
}

// TestAttachFails: an attach that fails after the bridge plugin gave the
// namespace an address (portmap refuses host port 0) leaves nothing of
// it (no address, no rule, no veth), and so does a path that is no
// namespace.
func TestAttachFails(t *testing.T) {
	state := t.TempDir()
	bridge := fmt.Sprintf("ckf%d", os.Getpid()%100000)
	nettest.KeepHost(t, bridge, "ckptdtest")
	n, err := New(Config{StateDir: state, Name: "ckptdtest", Bridge: bridge, Subnet: "10.79.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNS(filepath.Join(state, "netns"), "f")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveNS(ns) })
	notNS := filepath.Join(state, "file")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{ns, notNS} {
		_, err := n.Attach(context.Background(), Attachment{ID: "ckptdtest-f", NetNS: path, Ports: []Port{{HostPort: 0, ContainerPort: 80, Protocol: "tcp"}}})
		if err == nil {
			t.Fatalf("attached %s publishing host port 0", path)
		}
		if a, _ := filepath.Glob(filepath.Join(state, "ipam", "ckptdtest", "10.*")); len(a) > 0 {
			t.Errorf("%s: addresses left allocated: %v", path, a)
		}
	}
	if out, _ := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link").Output(); strings.Contains(string(out), "eth0") {
		t.Errorf("eth0 is left in the namespace:\n%s", out)
	}
}

// TestMakeAtAddress: a namespace made again asks for the address its
// predecessor had and gets it (a restore in place); one asked for an
// address another holds gets a new one; one asked for an address outside
// the subnet, or no address, is refused, and leaves nothing.
func TestMakeAtAddress(t *testing.T) {
	state := t.TempDir()
	bridge := fmt.Sprintf("ckm%d", os.Getpid()%100000)
	nettest.KeepHost(t, bridge, "ckptdtest")
	m, err := NewManager(Config{StateDir: state, Name: "ckptdtest", Bridge: bridge, Subnet: "10.80.0.0/24"}, filepath.Join(state, "netns"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := m.Make(ctx, "ckptdtest-m1", Spec{Mode: Private})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Leave(ctx, first) })
	if err := m.Leave(ctx, first); err != nil {
		t.Fatal(err)
	}
	again, err := m.Make(ctx, "ckptdtest-m2", first.Spec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Leave(ctx, again) })
	if again.IP != first.IP || again.MAC != first.MAC || first.MAC == "" {
		t.Errorf("made again at %s %s, had %s %s", again.IP, again.MAC, first.IP, first.MAC)
	}
	ln := listenIn(t, again.NetNS, again.IP+":8080")
	go serveEcho(ln)
	defer ln.Close()
	echo(t, again.IP+":8080")
	// Held by another: it gets a new address.
	other, err := m.Make(ctx, "ckptdtest-m4", Spec{Mode: Private, IP: again.IP, MAC: again.MAC})
	if err != nil {
		t.Fatal(err)
	}
	if other.IP == again.IP || other.MAC == again.MAC {
		t.Errorf("made at %s %s, which %s holds", other.IP, other.MAC, again.ID)
	}
	if err := m.Leave(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"10.99.0.7", "not-an-ip"} {
		if a, err := m.Make(ctx, "ckptdtest-m3", Spec{Mode: Private, IP: ip}); err == nil {
			m.Leave(ctx, a)
			t.Errorf("made at %s, which it must refuse", ip)
		}
		if left, _ := os.ReadDir(filepath.Join(state, "netns")); len(left) != 1 {
			t.Errorf("asked for %s: namespaces left %v, want only %s's", ip, left, again.ID)
		}
	}
	if a, _ := filepath.Glob(filepath.Join(state, "ipam", "ckptdtest", "10.*")); len(a) != 1 {
		t.Errorf("addresses allocated %v, want only %s", a, again.IP)
	}
}

// TestDetachFromCache: a detach given only the attachment's ID and
// namespace (its record was lost) still removes the published port's
// rules, from what CNI's cache kept.
func TestDetachFromCache(t *testing.T) {
	state := t.TempDir()
	bridge := fmt.Sprintf("ckc%d", os.Getpid()%100000)
	nettest.KeepHost(t, bridge, "ckptdtest")
	n, err := New(Config{StateDir: state, Name: "ckptdtest", Bridge: bridge, Subnet: "10.84.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNS(filepath.Join(state, "netns"), "c")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveNS(ns) })
	ctx := context.Background()
	if _, err := n.Attach(ctx, Attachment{ID: "ckptdtest-c", NetNS: ns, Ports: []Port{{HostPort: 18085, ContainerPort: 80, Protocol: "tcp"}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Detach(ctx, Attachment{ID: "ckptdtest-c", NetNS: ns}); err != nil {
		t.Fatal(err)
	}
	if rules := iptablesSave(t); strings.Contains(rules, "18085") {
		t.Errorf("the published port's rules are left:\n%s", grepLines(rules, "18085"))
	}
}

// TestAttachRefusesBadID: CNI's container IDs are a restricted alphabet.
func TestAttachRefusesBadID(t *testing.T) {
	n := &Network{}
	if _, err := n.Attach(context.Background(), Attachment{ID: "../x", NetNS: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "attachment id") {
		t.Fatalf("bad id: %v", err)
	}
}

// listenIn listens on addr inside the namespace at ns (a socket stays in
// the namespace it was made in).
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	ln, lerr := net.Listen("tcp4", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(err) // this thread must not go back to Go's pool in the wrong namespace
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	return ln
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Write([]byte(line))
		}()
	}
}

func echo(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi\n"))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hi\n" {
		t.Fatalf("echo through %s: %q, %v", addr, got, err)
	}
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPluginsBesideReaper: ckptd reaps the zombies of children nobody
// waits for (it is a child subreaper); the plugins' exits stay theirs.
// Here a reaper with the supervisor's rule runs flat out while
// namespaces are made and let go.
func TestPluginsBesideReaper(t *testing.T) {
	state := t.TempDir()
	bridge := fmt.Sprintf("ckr%d", os.Getpid()%100000)
	nettest.KeepHost(t, bridge, "ckptdtest")
	m, err := NewManager(Config{StateDir: state, Name: "ckptdtest", Bridge: bridge, Subnet: "10.83.0.0/24"}, filepath.Join(state, "netns"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		self := os.Getpid()
		for {
			select {
			case <-done:
				return
			default:
			}
			proc.WithSpawnLock(func() {
				for _, pid := range proc.Children(self) {
					if st, err := proc.ReadStat(pid); err == nil && st.State == 'Z' && !proc.Owned(pid) {
						var ws unix.WaitStatus
						unix.Wait4(pid, &ws, unix.WNOHANG, nil)
					}
				}
			})
		}
	}()
	ctx := context.Background()
	for i := range 30 {
		a, err := m.Make(ctx, fmt.Sprintf("ckptdtest-r%d", i), Spec{Mode: Private})
		if err != nil {
			t.Fatalf("make %d: %v", i, err)
		}
		if err := m.Leave(ctx, a); err != nil {
			t.Fatalf("leave %d: %v", i, err)
		}
	}
}
