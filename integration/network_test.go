package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/test/nettest"
)

// TestRunPrivateNetwork: two python3 http.server workloads, each in its
// own network namespace on ckptd's bridge network, serve the same inside
// port beside each other, each reached at its own published host port;
// ps gives their addresses and ports; --net none has only loopback; bad
// flags are refused; when they end, their addresses, namespaces and
// rules are gone, also for one that ended while ckptd was down.
func TestRunPrivateNetwork(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	www := t.TempDir()
	for _, name := range []string{"web1", "web2"} {
		if err := os.WriteFile(filepath.Join(www, name), []byte("from "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.must("run", "--name", "web1", "--net", "private", "-p", "18091:8000", "--", "python3", "-m", "http.server", "8000", "--directory", www)
	d.must("run", "--name", "web2", "--net", "private", "--publish", "18092:8000/tcp", "--", "python3", "-m", "http.server", "8000", "--directory", www)
	d.must("run", "--name", "alone", "--net", "none", "--", "sleep", "1000")
	for port, name := range map[string]string{"18091": "web1", "18092": "web2"} {
		waitFor(t, name+" to answer at its published port", func() bool { return get("http://127.0.0.1:"+port+"/"+name) == "from "+name })
	}
	ips := map[string]bool{}
	for _, x := range d.ps() {
		switch x.Ref.Name {
		case "web1", "web2":
			if x.Network != "private" || x.IP == "" || len(x.Ports) != 1 {
				t.Errorf("ps of %s: network %q, ip %q, ports %v", x.Ref.Name, x.Network, x.IP, x.Ports)
			}
			ips[x.IP] = true
			if got := get("http://" + x.IP + ":8000/" + x.Ref.Name); got != "from "+x.Ref.Name {
				t.Errorf("%s at its own address: %q", x.Ref.Name, got)
			}
		case "alone":
			if x.Network != "none" || x.IP != "" {
				t.Errorf("ps of alone: network %q, ip %q", x.Network, x.IP)
			}
		}
	}
	if len(ips) != 2 {
		t.Errorf("the two servers' addresses: %v", ips)
	}
	if get("http://127.0.0.1:8000/web1") != "" {
		t.Error("a private workload's port answers on the host's loopback")
	}
	d.mustFailAll(t, []failCase{
		{"--net \"bogus\"", []string{"run", "--name", "x1", "--net", "bogus", "--", "true"}},
		{"publishing ports needs --net private", []string{"run", "--name", "x2", "--net", "host", "-p", "1:2", "--", "true"}},
		{"want HOSTPORT:PORT", []string{"run", "--name", "x3", "--net", "private", "-p", "80", "--", "true"}},
		{"publishes no ports", []string{"run", "--name", "x4", "--net", "none", "-p", "18093:80", "--", "true"}},
	})

	d.must("kill", "web1")
	d.must("kill", "alone")
	waitFor(t, "the ended workloads' networks released", func() bool { return netnsLeft(d) == 1 })
	web2 := d.workload("web2").Ref.PID
	d.kill9()
	syscall.Kill(web2, syscall.SIGKILL) // it ends while no ckptd watches
	waitFor(t, "web2 to end", func() bool { return gone(web2) })
	d.start()
	d.ps()
	if n := netnsLeft(d); n != 0 {
		t.Errorf("%d namespaces left after every workload ended", n)
	}
	if a, _ := filepath.Glob(filepath.Join(d.root, "network", "ipam", "ckptd", "10.*")); len(a) > 0 {
		t.Errorf("addresses left allocated: %v", a)
	}
}

// get is the body an HTTP GET of url returns, or "" on any failure. It
// keeps no connection open: a server with one could not be checkpointed
// without --tcp-established.
func get(url string) string {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// netnsLeft counts the network namespaces ckptd keeps.
func netnsLeft(d *daemon) int {
	e, _ := os.ReadDir(filepath.Join(d.root, "netns"))
	return len(e)
}
