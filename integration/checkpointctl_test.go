package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkpointctl runs the field's checkpoint inspector on an archive.
func checkpointctl(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("checkpointctl")
	if err != nil {
		t.Fatalf("checkpointctl is not installed (make deps installs it): %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("checkpointctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCheckpointctlReadsExports: checkpointctl show and inspect --all
// read ckptd's exports of a workload and of a container as they read a
// Podman export: engine, name, image, runtime, CRIU's statistics, the
// process tree and memory sizes. The archives still import.
func TestCheckpointctlReadsExports(t *testing.T) {
	_, d, _ := withRunningContainer(t, "web", counterScript, 2)
	d.runLoad("cc", 16)
	d.create("cc", "--leave-running", "--name", "cc1")
	d.create("ctr:web", "--leave-running", "--name", "web1")
	dir := t.TempDir()
	for _, tc := range []struct {
		ckpt string
		want []string // in show's and inspect's output
	}{
		{"cc1", []string{"cc", "memload"}},
		{"web1", []string{"web", testImage, "runc", "sh"}},
	} {
		archive := filepath.Join(dir, tc.ckpt+".tar.zst")
		d.must("export", tc.ckpt, archive)
		show := checkpointctl(t, "show", archive)
		all := checkpointctl(t, "inspect", "--all", archive)
		t.Logf("checkpointctl show %s:\n%s\ninspect --all:\n%s", tc.ckpt, show, all)
		for _, want := range tc.want {
			if !strings.Contains(show+all, want) {
				t.Errorf("checkpointctl does not show %q for %s", want, tc.ckpt)
			}
		}
		for _, want := range []string{"containerd", "Freezing time", "Memory pages"} {
			if !strings.Contains(show+all, want) {
				t.Errorf("checkpointctl does not show %q for %s", want, tc.ckpt)
			}
		}
		d.must("import", archive, "--name", tc.ckpt+"-back")
		d.must("verify", tc.ckpt+"-back")
	}
}
