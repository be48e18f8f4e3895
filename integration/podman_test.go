package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptd/ckptd/test/containerdtest"
)

// podman is Podman with a private storage root for one test.
type podman struct {
	t    *testing.T
	root string
}

func startPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (make deps installs it): %v", err)
	}
	p := &podman{t: t, root: t.TempDir()}
	t.Cleanup(func() {
		p.run("system", "reset", "-f")
		if err := containerdtest.UnmountUnder(p.root); err != nil {
			t.Errorf("podman leftovers: %v", err)
		}
	})
	img, err := buildImage()
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(p.root, "image.tar")
	if err := os.WriteFile(tar, img.Layout, 0o600); err != nil {
		t.Fatal(err)
	}
	p.must("load", "-q", "-i", tar)
	return p
}

func (p *podman) run(args ...string) (string, error) {
	cmd := exec.Command("podman", append([]string{"--root", filepath.Join(p.root, "root"), "--runroot", filepath.Join(p.root, "run"),
		"--cgroup-manager", "cgroupfs"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestImportPodmanArchive: a container Podman checkpointed and exported
// (podman container checkpoint --export) imports into ckptd's store as a
// container checkpoint, refuses to restore while containerd lacks its
// base image (naming it), and then restores into containerd: the counter
// continues at the next value, with the file it wrote before.
func TestImportPodmanArchive(t *testing.T) {
	pm := startPodman(t)
	pm.must("run", "-d", "--name", "pc", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		testImage, "sh", "-c", counterScript)
	waitFor(t, "podman counter", func() bool {
		counts, _ := counterLines(pm.must("logs", "pc"))
		return len(counts) >= 3
	})
	archive := filepath.Join(t.TempDir(), "pc.tar.zst")
	pm.must("container", "checkpoint", "pc", "--export", archive)
	counts, _ := counterLines(pm.must("logs", "pc"))
	last := counts[len(counts)-1]

	x := startContainerd(t, false)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	var c checkpoint
	if err := json.Unmarshal([]byte(d.must("import", archive, "--name", "pm1", "-o", "json")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Target.Kind != "container" || c.Target.Name != "default/pc" {
		t.Errorf("imported Podman checkpoint of %+v, want container default/pc", c.Target)
	}
	d.must("verify", "pm1")
	line := d.mustFail("not in containerd namespace", "restore", "pm1")
	if !strings.Contains(line, testImage) {
		t.Errorf("missing-image error does not name the image: %s", line)
	}
	x.importImage()
	d.must("restore", "pm1")
	restored := filepath.Join(d.root, "containers", "default", "pc", "output.log")
	waitCount(t, restored, last+2)
	counts, markers := counterLines(readFile(restored))
	if counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored from Podman's archive: starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
}

// TestPodmanRestoresExport: a container checkpoint ckptd exported
// restores in Podman (podman container restore --import) with its
// counter continuing, as Podman's own exports do.
func TestPodmanRestoresExport(t *testing.T) {
	pm := startPodman(t)
	_, d, logPath := withRunningContainer(t, "web", counterScript, 3)
	c := d.create("ctr:web")
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]
	archive := filepath.Join(t.TempDir(), "web.tar.zst")
	d.must("export", c.Name, archive)
	runcCRIUConfig(t, "skip-file-rwx-check\n")
	if out, err := pm.run("container", "restore", "--import", archive, "--name", "pweb"); err != nil {
		t.Fatalf("podman container restore --import: %v\n%s%s", err, out, criuErrors(out))
	}
	var got []int
	var markers []string
	waitFor(t, "the counter in Podman", func() bool {
		got, markers = counterLines(pm.must("logs", "pweb"))
		return len(got) >= 2
	})
	if got[0] != last+1 || markers[0] != "kept" {
		t.Errorf("Podman restored ckptd's export: starts %d %q, want %d \"kept\"", got[0], markers[0], last+1)
	}
}

// criuErrors is the error lines of the CRIU log a failure message names.
func criuErrors(msg string) string {
	_, rest, ok := strings.Cut(msg, "log file: ")
	if !ok {
		return ""
	}
	var errs []string
	for _, line := range strings.Split(readFile(strings.TrimSpace(strings.Split(rest, "\n")[0])), "\n") {
		if strings.Contains(line, "Error") {
			errs = append(errs, line)
		}
	}
	return strings.Join(errs, "\n")
}

// runcCRIUConfig gives runc's CRIU the options conf for this test through
// /etc/criu/runc.conf, runc's default configuration file, and puts back
// what was there (or nothing) when the test ends.
func runcCRIUConfig(t *testing.T, conf string) {
	t.Helper()
	const path = "/etc/criu/runc.conf"
	old, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	madeDir := false
	if _, err := os.Stat(filepath.Dir(path)); os.IsNotExist(err) {
		if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		madeDir = true
	}
	t.Cleanup(func() {
		var err error
		if existed {
			err = os.WriteFile(path, old, 0o644)
		} else {
			err = os.Remove(path)
		}
		if err == nil && madeDir {
			err = os.Remove(filepath.Dir(path))
		}
		if err != nil {
			t.Errorf("put back %s: %v", path, err)
		}
	})
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}
