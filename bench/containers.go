package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ckptd/ckptd/test/containerdtest"
	"github.com/ckptd/ckptd/test/ociimage"
)

const (
	benchImage  = "ckptd.test/busybox:latest"
	benchScript = `echo kept > /data/marker; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done`
)

// containerBench checkpoints and restores the same tiny busybox container
// with ckptctl, ctr and (if installed) podman, in one run.
type containerBench struct {
	work string
	in   *containerdtest.Instance
}

func benchContainers(work string) {
	img, err := ociimage.Build(benchImage, nil)
	check(err)
	dir := filepath.Join(work, "ctrd")
	check(os.Mkdir(dir, 0o700))
	in, err := containerdtest.Start(context.Background(), dir)
	check(err)
	defer func() { check(in.Close()) }()
	check(in.Import(context.Background(), "default", img.Layout))
	b := &containerBench{work: work, in: in}

	d := startDaemon(work, "ctr", in.Address)
	defer d.stop()
	var ctlStop, ctlInPlace, ctlLeave, ctlCopy, ctrCkpt, ctrRestore []sample
	for i := range *rounds {
		id := fmt.Sprintf("ck%d", i)
		b.run(id)
		ctlStop = append(ctlStop, timed(func() { d.ctl("create", "--name", id+"-a", "ctr:"+id) }))
		ctlInPlace = append(ctlInPlace, timed(func() { d.ctl("restore", id+"-a") }))
		ctlLeave = append(ctlLeave, timed(func() { d.ctl("create", "--leave-running", "--name", id+"-b", "ctr:"+id) }))
		ctlCopy = append(ctlCopy, timed(func() { d.ctl("restore", "--name", id+"-copy", id+"-b") }))

		id = fmt.Sprintf("ctr%d", i)
		b.run(id)
		ref := "ckpt/" + id + ":latest"
		ctrCkpt = append(ctrCkpt, timed(func() { b.ctr("c", "checkpoint", "--task", "--rw", id, ref) }))
		ctrRestore = append(ctrRestore, timed(func() { b.ctr("c", "restore", "--live", "--rw", id+"-copy", ref) }))
	}
	rows := []row{
		{"create (stops it)", "ckptctl", ctlStop},
		{"restore in place", "ckptctl", ctlInPlace},
		{"create --leave-running", "ckptctl", ctlLeave},
		{"restore as a copy", "ckptctl", ctlCopy},
		{"checkpoint --task --rw", "ctr", ctrCkpt},
		{"restore --live --rw (copy)", "ctr", ctrRestore},
	}
	var pmCkpt, pmRestore []sample
	if _, err := exec.LookPath("podman"); err == nil {
		pmCkpt, pmRestore = benchPodman(work, img)
		rows = append(rows, row{"container checkpoint", "podman", pmCkpt}, row{"container restore", "podman", pmRestore})
	}
	fmt.Printf("\ncontainer: busybox sh counter, %d rounds (ckptctl and ctr take turns; podman runs after them)\n\n", *rounds)
	fmt.Printf("%-28s %-8s %24s\n", "measure", "tool", "wall s (min/median/max)")
	for _, r := range rows {
		fmt.Printf("%-28s %-8s %24s\n", r.name, r.tool, mmm(r.s, wallOf))
	}
	fmt.Println("ratios are of medians:")
	fmt.Println()
	ratio := func(what string, a, b []sample) {
		fmt.Printf("%-50s %6.2fx\n", what, float64(median(a))/float64(median(b)))
	}
	ratio("ckptctl create --leave-running / ctr checkpoint", ctlLeave, ctrCkpt)
	ratio("ckptctl restore as a copy / ctr restore", ctlCopy, ctrRestore)
	if pmCkpt != nil {
		ratio("ckptctl create / podman checkpoint (target <= 0.5x)", ctlStop, pmCkpt)
		ratio("ckptctl restore / podman restore (target <= 0.5x)", ctlInPlace, pmRestore)
	} else {
		fmt.Println("podman is not installed: no podman figures")
	}
}

type row struct {
	name, tool string
	s          []sample
}

func timed(f func()) sample {
	start := time.Now()
	f()
	return sample{wall: time.Since(start)}
}

func median(s []sample) time.Duration {
	_, mid, _ := spread(s, wallOf)
	return mid
}

func wallOf(s sample) time.Duration { return s.wall }

// spread is the min, median and max of f over the samples.
func spread(s []sample, f func(sample) time.Duration) (lo, mid, hi time.Duration) {
	v := make([]time.Duration, len(s))
	for i := range s {
		v[i] = f(s[i])
	}
	slices.Sort(v)
	return v[0], v[len(v)/2], v[len(v)-1]
}

// mmm renders min/median/max in seconds.
func mmm(s []sample, f func(sample) time.Duration) string {
	lo, mid, hi := spread(s, f)
	return fmt.Sprintf("%.3f/%.3f/%.3f", lo.Seconds(), mid.Seconds(), hi.Seconds())
}

// run starts container id and waits until it has printed a few lines.
func (b *containerBench) run(id string) {
	logPath := filepath.Join(b.work, id+".log")
	check(b.in.Run(context.Background(), "default", benchImage, id, benchScript, logPath))
	waitLines(logPath, 3)
}

func (b *containerBench) ctr(args ...string) {
	run("ctr", append([]string{"--address", b.in.Address, "-n", "default"}, args...)...)
}

func waitLines(path string, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(readFile(path), "\n") < n {
		if time.Now().After(deadline) {
			fatalf("container did not start printing: %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchPodman runs the same container under podman, with a private
// storage root; RLIMIT_NOFILE and RLIMIT_NPROC are lowered because podman's
// defaults exceed this host's hard limits.
func benchPodman(work string, img *ociimage.Image) (ckpt, restore []sample) {
	root := filepath.Join(work, "podman")
	pm := func(args ...string) string {
		return run("podman", append([]string{"--root", filepath.Join(root, "root"), "--runroot", filepath.Join(root, "run")}, args...)...)
	}
	defer func() {
		pm("system", "reset", "-f")
		if err := containerdtest.UnmountUnder(root); err != nil {
			log.Printf("podman leftovers: %v", err)
		}
	}()
	tar := filepath.Join(work, "image.tar")
	check(os.WriteFile(tar, img.Layout, 0o600))
	pm("load", "-q", "-i", tar)
	for i := range *rounds {
		name := fmt.Sprintf("pm%d", i)
		pm("run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			benchImage, "sh", "-c", benchScript)
		waitPodman(pm, name)
		ckpt = append(ckpt, timed(func() { pm("container", "checkpoint", name) }))
		restore = append(restore, timed(func() { pm("container", "restore", name) }))
		pm("rm", "-f", "-t", "0", name)
	}
	return ckpt, restore
}

func waitPodman(pm func(...string) string, name string) {
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(pm("logs", name), "\n") < 3 {
		if time.Now().After(deadline) {
			fatalf("podman container %s did not start printing", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
