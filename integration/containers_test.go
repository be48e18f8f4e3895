package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerCheckpointRestore checkpoints a containerd container and
// restores it in place, then again as a copy beside the original.
func TestContainerCheckpointRestore(t *testing.T) {
	x, d, logPath := withRunningContainer(t, "web", counterScript, 5)

	if out := d.must("ps"); !strings.Contains(out, "ctr:default/web") || !strings.Contains(out, testImage) {
		t.Fatalf("ps does not list the container with its image:\n%s", out)
	}
	c1 := d.create("ctr:default/web")
	if c1.Name != "web-1" {
		t.Errorf("checkpoint name %q, want web-1", c1.Name)
	}
	if _, ok := c1.Files["dump.log"]; !ok {
		t.Errorf("create reports the checkpoint without the files CRIU closed last: %v", keys(c1.Files))
	}
	if st := x.status("web"); st != "" {
		t.Fatalf("after create without --leave-running the task is %q, want none", st)
	}
	if out := d.must("ps", "-a"); !strings.Contains(out, "no task") {
		t.Errorf("ps -a does not show the stopped container:\n%s", out)
	}
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]

	var ck struct {
		Files     map[string]any `json:"files"`
		Container struct {
			Image       string `json:"image"`
			ImageDigest string `json:"image_digest"`
			Snapshotter string `json:"snapshotter"`
		} `json:"container"`
	}
	if err := json.Unmarshal([]byte(d.must("inspect", "-o", "json", "web-1")), &struct {
		Checkpoint any `json:"checkpoint"`
	}{&ck}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "rootfs-diff.tar", "pstree.img", "dump.log", "stats-dump"} {
		if _, ok := ck.Files[f]; !ok {
			t.Errorf("checkpoint lacks %s (files: %v)", f, keys(ck.Files))
		}
	}
	if ck.Container.Image != testImage || !strings.HasPrefix(ck.Container.ImageDigest, "sha256:") || ck.Container.Snapshotter == "" {
		t.Errorf("container record: %+v", ck.Container)
	}

	// In place: the stopped container is replaced by its restore.
	d.must("restore", "web-1")
	restoredLog := filepath.Join(d.root, "containers", "default", "web", "output.log")
	waitCount(t, restoredLog, last+3)
	counts, markers := counterLines(d.must("logs", "ctr:default/web"))
	if counts[0] != last+1 {
		t.Errorf("restored counter starts at %d, want %d (checkpointed at %d)", counts[0], last+1, last)
	}
	if markers[0] != "kept" {
		t.Errorf("file written before the checkpoint reads %q after restore, want \"kept\"", markers[0])
	}
	if st := x.status("web"); st != "running" {
		t.Fatalf("restored container is %q", st)
	}

	// A copy beside the original, from a --leave-running checkpoint.
	c2 := d.create("ctr:default/web", "--leave-running")
	if c2.Parent != c1.ID {
		t.Errorf("second checkpoint's parent %q, want %q (the one web was restored from)", c2.Parent, c1.ID)
	}
	if !counting(t, restoredLog) {
		t.Fatal("container stopped counting after --leave-running")
	}
	d.must("restore", c2.Name, "--name", "web2")
	copyLog := filepath.Join(d.root, "containers", "default", "web2", "output.log")
	waitCount(t, copyLog, 1)
	if x.status("web") != "running" || x.status("web2") != "running" {
		t.Fatalf("original %q, copy %q: want both running", x.status("web"), x.status("web2"))
	}
	copyCounts, copyMarkers := counterLines(readFile(copyLog))
	if copyCounts[0] <= last+1 || copyMarkers[0] != "kept" {
		t.Errorf("copy starts at %d %q, want past %d with the marker", copyCounts[0], copyMarkers[0], last+1)
	}
	var copyTarget *target
	for _, tg := range d.ps() {
		if tg.Ref.Name == "default/web2" {
			copyTarget = &tg
		}
	}
	if copyTarget == nil || copyTarget.RestoredFrom != c2.ID || !copyTarget.Running {
		t.Errorf("ps entry of the copy: %+v, want running, restored from %s", copyTarget, c2.ID)
	}
	if out := d.must("ls", "--tree"); !strings.Contains(out, "web2") {
		t.Errorf("lineage tree lacks the copy:\n%s", out)
	}
	d.must("kill", "ctr:web2")
	waitFor(t, "killed copy to stop", func() bool { return x.status("web2") == "stopped" })
	if x.status("web") != "running" {
		t.Errorf("killing the copy touched the original: %q", x.status("web"))
	}
}

// TestContainerRestoreOnSecondContainerd restores a checkpoint into another
// containerd (another state root) from the same store: first without the
// base image, which must fail clearly, then with it.
func TestContainerRestoreOnSecondContainerd(t *testing.T) {
	a := startContainerd(t, true)
	b := startContainerd(t, false)
	root := filepath.Join(t.TempDir(), "state")
	d := startDaemonAt(t, root, a.in.Address)
	logPath := a.run("db", counterScript)
	waitCount(t, logPath, 3)
	c := d.create("ctr:db")
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]
	d.stop()

	d2 := startDaemonAt(t, root, b.in.Address)
	line := d2.mustFail("not in containerd namespace", "restore", c.Name)
	if !strings.Contains(line, testImage) {
		t.Errorf("missing-image error does not name the image: %s", line)
	}
	if st := b.status("db"); st != "absent" {
		t.Errorf("failed restore left container db (%q) behind", st)
	}
	b.importImage()
	d2.must("restore", c.Name)
	restored := filepath.Join(root, "containers", "default", "db", "output.log")
	waitCount(t, restored, last+2)
	counts, markers := counterLines(readFile(restored))
	if counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored on the second containerd: starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// stagingEmpty checks that a failed create left nothing in staging/ or checkpoints/.
func stagingEmpty(t *testing.T, root string) {
	t.Helper()
	for _, sub := range []string{"staging", "checkpoints"} {
		entries, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s/ holds %d entries after a failed create", sub, len(entries))
		}
	}
}

// TestContainerPsAndCheck: ps lists containers beside workloads, check
// reports containerd; without containerd both still work and say why.
func TestContainerPsAndCheck(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	x.run("web", counterScript)
	d.runLoad("job", 4)
	out, errOut, err := d.ctl("ps")
	if err != nil || errOut != "" {
		t.Fatalf("ps: %v %s", err, errOut)
	}
	for _, want := range []string{"ctr:default/web", "container", "job", "workload"} {
		if !strings.Contains(out, want) {
			t.Errorf("ps lacks %q:\n%s", want, out)
		}
	}
	if out := d.must("check"); !strings.Contains(out, "containerd") || !strings.Contains(out, "1.6") {
		t.Errorf("check does not report containerd's version:\n%s", out)
	}

	lone := startDaemon(t) // its containerd socket leads nowhere
	lone.runLoad("solo", 4)
	out, errOut, err = lone.ctl("ps")
	if err != nil || !strings.Contains(out, "solo") {
		t.Fatalf("ps without containerd: %v\n%s", err, out)
	}
	if !strings.Contains(errOut, "warning: containers not listed") || !strings.Contains(errOut, "not reachable") {
		t.Errorf("ps without containerd does not say why containers are missing: %q", errOut)
	}
	if out := lone.must("check"); !strings.Contains(out, "not reachable") {
		t.Errorf("check without containerd:\n%s", out)
	}
	lone.mustFail("not reachable", "create", "ctr:web")
}

// TestRestoredContainerCheckpointsAgain: a container whose stdin is a
// pipe (as ctr run -d gives it) is checkpointed, restored, and then
// checkpointed and restored again: in place, as a copy, and a copy
// stopped by its checkpoint. A restored task once got the host's
// /dev/null as stdin, which CRIU cannot dump ("Can't lookup mount").
func TestRestoredContainerCheckpointsAgain(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	waitCount(t, x.runPiped("web", counterScript), 2)

	c1 := d.create("ctr:default/web")
	d.must("restore", c1.Name)
	restoredLog := filepath.Join(d.root, "containers", "default", "web", "output.log")
	waitCount(t, restoredLog, 1)

	c2 := d.create("ctr:default/web", "--leave-running")
	if c2.Parent != c1.ID {
		t.Errorf("second checkpoint's parent %q, want %q", c2.Parent, c1.ID)
	}
	d.must("restore", c2.Name, "--name", "web2")
	copyLog := filepath.Join(d.root, "containers", "default", "web2", "output.log")
	waitCount(t, copyLog, 1)

	c3 := d.create("ctr:default/web2")
	if st := x.status("web2"); st != "" {
		t.Fatalf("after its checkpoint the copy's task is %q, want none", st)
	}
	counts, _ := counterLines(readFile(copyLog))
	last := counts[len(counts)-1]
	d.must("restore", c3.Name)
	waitCount(t, copyLog, last+2)
	d.create("ctr:default/web2", "--leave-running")
	if x.status("web") != "running" || x.status("web2") != "running" {
		t.Fatalf("original %q, copy %q: want both running", x.status("web"), x.status("web2"))
	}
}
