package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// peerPort is where every test host's ckptd serves peers.
const peerPort = "7070"

// host is one machine of a migration test: a network namespace with one
// end of a veth pair (its address lives only there), a directory of its
// own, and peer credentials from the test CA.
type host struct {
	t     *testing.T
	name  string
	netns string
	ip    string
	dev   string // its end of the veth pair
	dir   string // state root, binaries only this host has
	certs string
	other *host // its files are hidden from this host
	// mounts holds the host's mount namespace (one per host, as a machine
	// has): every ckptd started on the host, restarts included, joins it.
	mounts *exec.Cmd
}

var hostNets atomic.Int32

// twoHosts makes hosts "a" and "b", joined by a veth pair on a subnet of
// their own, with certificates from one CA. Everything is removed when
// the test ends.
func twoHosts(t *testing.T) (a, b *host) {
	t.Helper()
	n := hostNets.Add(1)
	tag := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	subnet := fmt.Sprintf("10.231.%d", n%250)
	pki := t.TempDir()
	ctl(t, "certs", "ca", filepath.Join(pki, "ca"), "--name", "ckptd test CA")
	hosts := make([]*host, 2)
	for i, name := range []string{"a", "b"} {
		h := &host{t: t, name: name, netns: "ckptd-it-" + name + tag, ip: fmt.Sprintf("%s.%d", subnet, i+1), dir: t.TempDir()}
		run(t, "ip", "netns", "add", h.netns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", h.netns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", h.netns, err, out)
			}
		})
		h.certs = filepath.Join(pki, name)
		ctl(t, "certs", "host", name, "--ca", filepath.Join(pki, "ca"), "--out", h.certs, "--ip", h.ip)
		hosts[i] = h
	}
	a, b = hosts[0], hosts[1]
	a.other, b.other = b, a
	va, vb := "ckva"+tag, "ckvb"+tag
	run(t, "ip", "link", "add", va, "type", "veth", "peer", "name", vb)
	for _, x := range []struct {
		h   *host
		dev string
	}{{a, va}, {b, vb}} {
		x.h.dev = x.dev
		run(t, "ip", "link", "set", x.dev, "netns", x.h.netns)
		run(t, "ip", "-n", x.h.netns, "addr", "add", x.h.ip+"/24", "dev", x.dev)
		run(t, "ip", "-n", x.h.netns, "link", "set", x.dev, "up")
		run(t, "ip", "-n", x.h.netns, "link", "set", "lo", "up")
	}
	return a, b
}

// addr is the host's peer address.
func (h *host) addr() string { return h.ip + ":" + peerPort }

// ckptd starts a ckptd on this host: in its network namespace, in a mount
// namespace of its own where the other host's directory is an empty
// tmpfs, serving peers with the host's credentials (or with certs, when
// given), talking to the containerd at containerd ("" for none), with
// extra flags.
func (h *host) ckptd(containerd, certs string, extra ...string) *daemon {
	h.t.Helper()
	if certs == "" {
		certs = h.certs
	}
	if containerd == "" {
		containerd = filepath.Join(h.dir, "no-containerd.sock")
	}
	d := &daemon{
		t: h.t, root: filepath.Join(h.dir, "root"), socket: filepath.Join(h.dir, "ckptd.sock"), containerd: containerd,
		wrap: []string{"nsenter", "--target", strconv.Itoa(h.mountNS().Process.Pid), "--mount", "--net"},
		args: append([]string{"--peer-listen", h.addr(), "--peer-certs", certs}, extra...),
	}
	d.start()
	h.t.Cleanup(d.cleanup)
	return d
}

// mountNS starts, once, the process that holds the host's mount namespace:
// made inside its network namespace (so /sys is that namespace's), with
// the other host's directory hidden under an empty tmpfs.
func (h *host) mountNS() *exec.Cmd {
	h.t.Helper()
	if h.mounts != nil {
		return h.mounts
	}
	ready := filepath.Join(h.dir, "mounts-ready")
	// ip netns exec mounts a sysfs of its own, without the cgroup
	// hierarchies a machine has under it: the freezer's is mounted again.
	freezer := `mount -t tmpfs -o size=1m cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/freezer && mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer`
	mask := `mount -t tmpfs -o size=1m,mode=0700 ckptd-it-mask "$MASK" && ` + freezer + ` && touch "$READY" && exec sleep infinity`
	h.mounts = exec.Command("ip", "netns", "exec", h.netns, "unshare", "--mount", "--propagation", "private",
		"env", "MASK="+h.other.dir, "READY="+ready, "sh", "-c", mask)
	if err := h.mounts.Start(); err != nil {
		h.t.Fatalf("start host %s's mount namespace: %v", h.name, err)
	}
	cmd := h.mounts
	h.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(h.t, "host "+h.name+"'s mount namespace", func() bool { _, err := os.Stat(ready); return err == nil })
	return h.mounts
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// ctl runs ckptctl without a daemon (certs).
func ctl(t *testing.T, args ...string) {
	t.Helper()
	run(t, bins.ckptctl, args...)
}
