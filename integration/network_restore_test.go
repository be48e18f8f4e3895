package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/test/nettest"
)

// counterServer answers every HTTP GET with how many it has answered: its
// state lives in its memory.
const counterServer = `
import http.server, sys
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        body = ("n=%d" % n).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", 8000), H).serve_forever()
`

// TestRestorePrivateNetwork: workloads in their own network namespaces
// checkpoint and restore. A copy of a python3 server with state in its
// memory, and of nginx, answers on its own published host port beside
// its original, at its own address, each with its own state; a restore
// in place comes back at the address it had, on its own published port.
// What cannot be is refused in one line. When everything has ended, no
// namespace, address or rule is left.
func TestRestorePrivateNetwork(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	d.must("run", "--name", "count", "--net", "private", "-p", "18101:8000", "--", "python3", "-c", counterServer)
	waitFor(t, "count to answer", func() bool { return get("http://127.0.0.1:18101/") != "" })
	for i := 2; i <= 3; i++ {
		if got := get("http://127.0.0.1:18101/"); got != fmt.Sprintf("n=%d", i) {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	orig := d.workload("count")
	d.must("create", "count", "--leave-running", "--name", "count-3")

	// A copy beside its original: its own address, its own host port,
	// its own state from the checkpoint on.
	out := d.must("restore", "count-3", "--name", "count-copy", "-p", "18102:8000")
	cp := d.workload("count-copy")
	if cp.IP == "" || cp.IP == orig.IP || cp.Network != "private" || len(cp.Ports) != 1 || !strings.Contains(out, cp.IP) {
		t.Fatalf("the copy's network: ip %q (original %q), %q, ports %v; restore said %q", cp.IP, orig.IP, cp.Network, cp.Ports, out)
	}
	for _, step := range []struct{ url, want string }{
		{"http://127.0.0.1:18102/", "n=4"},
		{"http://127.0.0.1:18102/", "n=5"},
		{"http://" + cp.IP + ":8000/", "n=6"},
		{"http://127.0.0.1:18101/", "n=4"},
		{"http://" + orig.IP + ":8000/", "n=5"},
	} {
		if got := get(step.url); got != step.want {
			t.Errorf("%s: %q, want %q", step.url, got, step.want)
		}
	}
	d.mustFailAll(t, []failCase{
		{"HOSTPORT:PORT", []string{"restore", "count-3", "--name", "c2", "-p", "x"}},
	})

	// In place: the original ends with its checkpoint, and comes back at
	// its address.
	d.must("create", "count", "--name", "count-5")
	waitFor(t, "the original to end", func() bool { return gone(orig.Ref.PID) })
	d.must("restore", "count-5")
	back := d.workload("count")
	if back.IP != orig.IP || len(back.Ports) != 1 {
		t.Errorf("restored in place at %q with ports %v, was at %q", back.IP, back.Ports, orig.IP)
	}
	if got := get("http://127.0.0.1:18101/"); got != "n=6" {
		out, _ := exec.Command("curl", "-sv", "--max-time", "3", "http://127.0.0.1:18101/").CombinedOutput()
		ipt, _ := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
		t.Errorf("restored in place: %q, want n=6: %s\n%s", got, out, ipt)
	}

	// nginx, a tree of two processes: a copy serves beside its original.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("from nginx"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(www, "nginx.conf")
	// Workers as root: CRIU cannot dump a tree of two users here.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %[1]s; server { listen 80; root %[1]s; } }
`, www)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must("run", "--name", "web", "--net", "private", "-p", "18103:80", "--", "/usr/sbin/nginx", "-c", conf, "-p", www)
	waitFor(t, "nginx to answer", func() bool { return get("http://127.0.0.1:18103/") == "from nginx" })
	d.must("create", "web", "--leave-running", "--name", "web-1")
	d.must("restore", "web-1", "--name", "web-copy", "-p", "18104:80")
	for _, port := range []string{"18103", "18104"} {
		if got := get("http://127.0.0.1:" + port + "/"); got != "from nginx" {
			t.Errorf("nginx on %s: %q", port, got)
		}
	}

	for _, name := range []string{"count", "count-copy", "web", "web-copy"} {
		d.must("kill", name)
	}
	waitFor(t, "every network released", func() bool { return netnsLeft(d) == 0 })
	if a, _ := filepath.Glob(filepath.Join(d.root, "network", "ipam", "ckptd", "10.*")); len(a) > 0 {
		t.Errorf("addresses left allocated: %v", a)
	}
}

// TestMigratePrivateNetwork: a workload in its own network migrates to
// another host at the same inside address, its published port moving
// with it and its state kept; the source lets go of its network.
func TestMigratePrivateNetwork(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	src.must("run", "--name", "count", "--net", "private", "-p", "18105:8000", "--", "python3", "-c", counterServer)
	waitFor(t, "count to answer on host a", func() bool { return hostGet(a, "http://"+a.ip+":18105/") != "" })
	if got := hostGet(a, "http://"+a.ip+":18105/"); got != "n=2" {
		t.Fatalf("second request: %q", got)
	}
	w := src.workload("count")
	src.migrate("count", "--to", b.addr())
	x := dst.workload("count")
	if x.IP != w.IP || x.Network != "private" || strings.Join(x.Ports, ",") != strings.Join(w.Ports, ",") {
		t.Errorf("migrated to %q %q ports %v, was at %q ports %v", x.Network, x.IP, x.Ports, w.IP, w.Ports)
	}
	for _, step := range []struct{ url, want string }{
		{"http://" + b.ip + ":18105/", "n=3"},
		{"http://" + w.IP + ":8000/", "n=4"},
	} {
		if got := hostGet(b, step.url); got != step.want {
			t.Errorf("on host b, %s: %q, want %q", step.url, got, step.want)
		}
	}
	waitFor(t, "the source to let go of its network", func() bool { return netnsLeft(src) == 0 })
	dst.must("kill", "count")
	waitFor(t, "the destination to let go of its network", func() bool { return netnsLeft(dst) == 0 })
}

// hostGet is the body of an HTTP GET of url from inside host h, or "".
func hostGet(h *host, url string) string {
	out, err := exec.Command("ip", "netns", "exec", h.netns, "curl", "-s", "--max-time", "3", url).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// TestConnectedWorkloads: a client workload holds a TCP connection to a
// server workload, each in its own network namespace, across ckptd's
// bridge. Either one checkpointed with --tcp-established and restored in
// place (its address and MAC kept) finds the conversation where it was:
// nothing lost, repeated or reordered.
func TestConnectedWorkloads(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	d.must("run", "--name", "server", "--", bins.tcpload, "--listen", "0.0.0.0:9000")
	waitFor(t, "the server to listen", func() bool { return strings.Contains(d.must("logs", "server"), "listening") })
	d.must("run", "--name", "client", "--", bins.tcpload, "--client", d.workload("server").IP+":9000")
	logs := func() string { return d.must("logs", "client") }
	waitFor(t, "the conversation under way", func() bool { return lastOK(logs()) >= 5 })
	for _, side := range []string{"server", "client"} {
		d.must("create", side, "--tcp-established", "--name", side+"-1")
		before := lastOK(logs())
		d.must("restore", side+"-1")
		deadline := time.Now().Add(30 * time.Second)
		for lastOK(logs()) < before+10 {
			if time.Now().After(deadline) {
				t.Fatalf("the conversation did not go on after the restore of the %s:\n%s", side, tail(logs(), 5))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if l := logs(); strings.Contains(l, "ERROR") {
		t.Fatalf("the conversation broke:\n%s", tail(l, 10))
	}
}

// ownAddressServer listens on its own address, not a wildcard: its
// restore needs the address in place before CRIU binds the socket.
const ownAddressServer = `
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("10.77.0.1", 9))
ip = u.getsockname()[0]
u.close()
l = socket.socket()
l.bind((ip, 8000))
l.listen()
print("bound", ip, flush=True)
while True:
    c, _ = l.accept()
    c.sendall(b"at " + ip.encode())
    c.close()
`

// TestRestoreWiring: a restore wires the workload's network while CRIU
// restores only when no socket needs its address. A server bound to its
// own address restores in place (its address wired first) and answers
// there; a server on the wildcard restores as a copy, wired beside CRIU,
// and answers on its new address and published port once restore
// returns. (With the gate forced open the first part passed too in a run
// here: CRIU seems to bind restored sockets whether or not the address
// is there yet. The gate stays, as a precaution for what it names.)
func TestRestoreWiring(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	d.must("run", "--name", "own", "--net", "private", "--", "python3", "-c", ownAddressServer)
	own := d.workload("own")
	waitFor(t, "own bound", func() bool { return strings.Contains(readFile(own.Ref.LogPath), "bound") })
	d.must("create", "own", "--name", "own-1")
	waitFor(t, "own to end", func() bool { return gone(own.Ref.PID) })
	d.must("restore", "own-1")
	if back := d.workload("own"); back.IP != own.IP || !back.Running {
		t.Fatalf("restored in place as %+v, was at %s", back, own.IP)
	}
	if got := dialRead(t, own.IP+":8000"); got != "at "+own.IP {
		t.Fatalf("the restored server says %q", got)
	}

	d.must("run", "--name", "any", "--net", "private", "-p", "18105:8000", "--", "python3", "-c", counterServer)
	waitFor(t, "any to answer", func() bool { return get("http://127.0.0.1:18105/") == "n=1" })
	d.must("create", "any", "--leave-running", "--name", "any-1")
	d.must("restore", "any-1", "--name", "any-copy", "-p", "18106:8000")
	cp := d.workload("any-copy")
	for _, url := range []string{"http://127.0.0.1:18106/", "http://" + cp.IP + ":8000/"} {
		if got := get(url); !strings.HasPrefix(got, "n=") {
			t.Errorf("the copy on %s: %q", url, got)
		}
	}
	for _, name := range []string{"own", "any", "any-copy"} {
		d.must("kill", name)
	}
}

// dialRead connects to addr and reads what it says until it closes.
func dialRead(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestRestoreWiringFails: a restore whose network wiring fails while CRIU
// restores (a failpoint fails it once done) fails in one line; the tree
// CRIU restored never runs and is gone, its namespace and address are let
// go, nothing is listed, and the original runs on.
func TestRestoreWiringFails(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	job := d.runLoad("job", 16)
	d.must("create", "job", "--leave-running", "--name", "job-1")
	before := loadStatus(t, job.Ref.PID, job.Ref.LogPath)
	d.stop()
	d.env = append(d.env, "CKPTD_FAILPOINT_WIRE_FAIL=wiring failed here (failpoint)")
	d.start()
	d.mustFail("wiring failed here (failpoint)", "restore", "job-1", "--name", "copy")
	for _, tg := range d.ps() {
		if tg.Ref.Name == "copy" {
			t.Fatalf("the failed copy is listed: %+v", tg)
		}
	}
	if n := netnsLeft(d); n != 1 {
		t.Fatalf("%d network namespaces, want the original's alone", n)
	}
	if a, _ := filepath.Glob(filepath.Join(d.root, "network", "ipam", "ckptd", "10.*")); len(a) != 1 {
		t.Fatalf("addresses allocated: %v, want the original's alone", a)
	}
	if pids := runningBinary(bins.memload); len(pids) != 1 || pids[0] != job.Ref.PID {
		t.Fatalf("memload runs as %v, want the original (%d) alone", pids, job.Ref.PID)
	}
	continues(t, before, loadStatus(t, job.Ref.PID, job.Ref.LogPath))
	d.must("kill", "job")
}

// runningBinary lists the live processes that run the binary exe.
func runningBinary(exe string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); p == exe && !gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
