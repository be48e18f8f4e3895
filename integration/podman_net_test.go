package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptd/ckptd/test/nettest"
)

// TestPodmanNetwork: a container in Podman's default network
// (its namespace kept outside its checkpoint by Podman) imports, and
// restores into containerd in a new namespace on ckptd's network: the
// counter continues, the restore says in one line that its address
// changed, ps gives the new one, and the namespace goes when the
// container ends.
func TestPodmanNetwork(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	nettest.KeepHost(t, "cni-podman0", "podman")
	pm := startPodman(t)
	pm.must("run", "-d", "--name", "pn", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		testImage, "sh", "-c", counterScript)
	t.Cleanup(func() { pm.run("rm", "-f", "pn") })
	var inspect []struct {
		NetworkSettings struct {
			IPAddress string
		}
	}
	if err := json.Unmarshal([]byte(pm.must("inspect", "pn")), &inspect); err != nil || len(inspect) != 1 || inspect[0].NetworkSettings.IPAddress == "" {
		t.Fatalf("podman inspect: %v %+v: the container is in no network of Podman's", err, inspect)
	}
	podmanIP := inspect[0].NetworkSettings.IPAddress
	waitFor(t, "podman counter", func() bool {
		counts, _ := counterLines(pm.must("logs", "pn"))
		return len(counts) >= 3
	})
	archive := filepath.Join(t.TempDir(), "pn.tar.zst")
	pm.must("container", "checkpoint", "pn", "--export", archive)
	counts, _ := counterLines(pm.must("logs", "pn"))
	last := counts[len(counts)-1]

	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	d.must("import", archive, "--name", "pn1")
	_, stderr, err := d.ctl("restore", "pn1")
	if err != nil {
		t.Fatalf("restore: %v: %s", err, stderr)
	}
	if !strings.Contains(stderr, "on ckptd's network now") {
		t.Errorf("the restore does not say the address changed: %q", stderr)
	}
	restored := filepath.Join(d.root, "containers", "default", "pn", "output.log")
	waitCount(t, restored, last+2)
	counts, markers := counterLines(readFile(restored))
	if counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored from Podman's archive: starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
	var ip string
	for _, c := range d.ps() {
		if c.Ref.Name == "default/pn" {
			ip = c.IP
		}
	}
	if !strings.HasPrefix(ip, "10.77.") || ip == podmanIP {
		t.Errorf("restored at %q (Podman had %s), want an address on ckptd's network", ip, podmanIP)
	}
	d.must("kill", "ctr:default/pn")
	waitFor(t, "the container's network let go of", func() bool {
		d.ps()
		return netnsLeft(d) == 0
	})
}
