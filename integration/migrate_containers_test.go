package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateContainer moves a container between two private containerds
// on two hosts: refused while the destination lacks the base image, then
// moved, continuing its counter at exactly the next value with the file it
// wrote into its writable layer. The two containerds share one kernel and
// runc's state root (/run/containerd/runc/NAMESPACE/ID), so the container
// lands in another namespace; on two machines it would keep its name.
// It moves back by pre-copy: live rounds, then the frozen one.
func TestMigrateContainer(t *testing.T) {
	a, b := twoHosts(t)
	xa, xb := startContainerd(t, true), startContainerd(t, false)
	src, dst := a.ckptd(xa.in.Address, ""), b.ckptd(xb.in.Address, "")
	logPath := xa.runPiped("mover", counterScript) // stdin a pipe, as ctr run -d gives it
	waitCount(t, logPath, 5)

	const as = "ctr:moved/mover"
	line := src.mustFail("base image "+testImage, "migrate", "ctr:default/mover", "--to", b.addr(), "--name", as)
	if !strings.Contains(line, "pre-flight") {
		t.Errorf("refusal does not say it came from the pre-flight: %s", line)
	}
	if st := xa.status("mover"); st != "running" || !counting(t, logPath) {
		t.Fatalf("after the refusal the source container is %q (counting: %v)", st, counting(t, logPath))
	}

	img, err := buildImage()
	if err != nil {
		t.Fatal(err)
	}
	if err := xb.in.Import(context.Background(), "moved", img.Layout); err != nil {
		t.Fatal(err)
	}
	r := src.migrate("ctr:default/mover", "--to", b.addr(), "--name", as)
	if r.Name != "moved/mover" || !r.SourceStopped {
		t.Fatalf("migrate result %+v", r)
	}
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]
	if st := xa.status("mover"); st == "running" || st == "paused" {
		t.Errorf("source container is %s after the migration", st)
	}
	if st := xb.statusIn("moved", "mover"); st != "running" {
		t.Fatalf("destination container is %q", st)
	}
	moved := filepath.Join(dst.root, "containers", "moved", "mover", "output.log")
	waitCount(t, moved, last+3)
	got, markers := counterLines(readFile(moved))
	if got[0] != last+1 || markers[0] != "kept" {
		t.Errorf("destination continues at %d with marker %q, want %d and %q", got[0], markers[0], last+1, "kept")
	}
	ps := dst.must("ps")
	if !strings.Contains(ps, "moved/mover") || !strings.Contains(ps, shortID(r.Checkpoint)) {
		t.Errorf("destination ps does not show the container restored from %s:\n%s", r.Checkpoint, ps)
	}

	// A migrated container migrates again: back to the first host.
	if err := xa.in.Import(context.Background(), "back", img.Layout); err != nil {
		t.Fatal(err)
	}
	got, _ = counterLines(readFile(moved))
	dst.mustFail("containerd's checkpoints have no lazy pages", "migrate", as, "--to", a.addr(), "--lazy")
	// By pre-copy: live rounds through containerd, then the frozen one.
	r = dst.migrate(as, "--to", a.addr(), "--name", "ctr:back/mover", "--precopy", "--precopy-rounds", "3")
	if r.Name != "back/mover" || !r.SourceStopped {
		t.Fatalf("second migration's result %+v", r)
	}
	if len(r.Rounds) < 2 || !r.Rounds[len(r.Rounds)-1].Frozen || r.Rounds[0].Frozen {
		t.Errorf("pre-copy rounds %+v: want live rounds, then the frozen one", r.Rounds)
	}
	back := filepath.Join(src.root, "containers", "back", "mover", "output.log")
	waitCount(t, back, got[len(got)-1]+2)
	for _, d := range []*daemon{src, dst} {
		if l := leftovers(t, d); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// TestMigrateContainerFenced: a container's migration is fenced as a
// process's is. The source's last word ("done") is cut: the destination's
// container stays restored but stopped, marked in doubt, and counts
// nothing until the operator resumes it; then it continues at exactly the
// next value.
func TestMigrateContainerFenced(t *testing.T) {
	a, b := twoHosts(t)
	xa, xb := startContainerd(t, true), startContainerd(t, false)
	src, dst := a.ckptd(xa.in.Address, ""), b.ckptd(xb.in.Address, "")
	src.stop()
	src.env = []string{"CKPTD_FAILPOINT_CUT_BEFORE=done"}
	src.start()
	img, err := buildImage()
	if err != nil {
		t.Fatal(err)
	}
	if err := xb.in.Import(context.Background(), "fenced", img.Layout); err != nil {
		t.Fatal(err)
	}
	logPath := xa.run("fenced", counterScript)
	waitCount(t, logPath, 3)
	src.ctl("migrate", "ctr:default/fenced", "--to", b.addr(), "--name", "ctr:fenced/fenced")
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]
	if st := xa.status("fenced"); st == "running" || st == "paused" {
		t.Fatalf("source container is %s after its migration", st)
	}
	var copy target
	waitFor(t, "destination in doubt", func() bool {
		for _, x := range dst.ps() {
			if x.Ref.Name == "fenced/fenced" && x.InDoubt != "" {
				copy = x
				return true
			}
		}
		return false
	})
	if st := threadStates(copy.Ref.PID); !strings.Contains(st, "T (stopped)") {
		t.Fatalf("the destination's container runs while in doubt: %s", st)
	}
	moved := filepath.Join(dst.root, "containers", "fenced", "fenced", "output.log")
	if n, _ := counterLines(readFile(moved)); len(n) != 0 {
		t.Fatalf("the container counted while in doubt: %v", n)
	}
	dst.must("migrate", "--resolve", "ctr:fenced/fenced", "--resume")
	waitCount(t, moved, last+2)
	if got, _ := counterLines(readFile(moved)); got[0] != last+1 {
		t.Errorf("resumed container continues at %d, want %d", got[0], last+1)
	}
}
