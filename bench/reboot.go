package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	rebootOn  = flag.Bool("reboot", true, "benchmark reboot survival: the stop of a ckptd whose persisted workloads a shutdown checkpoints, and the next start that restores them, against raw criu dumping and restoring the same")
	rebootN   = flag.Int("reboot-workloads", 4, "persisted memload workloads")
	rebootMiB = flag.Int("reboot-mib", 256, "memory of each persisted workload, in MiB")
)

// benchReboot stops a ckptd --checkpoint-on-stop running N persisted
// workloads (the shutdown's checkpoint), starts it again (the boot's
// restore), and in turns dumps and restores N raw memloads one by one
// with the criu command line; a ckptd stopped with nothing to do gives
// the stop's own cost.
func benchReboot(work string) {
	memload := buildMemload(work)
	var stop, start, plain, rawDump, rawRestore []sample
	for i := -1; i < *rounds; i++ { // round -1 warms the page cache and both paths
		rd, rr := rawReboot(work, memload, i)
		s, st, p := ckptdReboot(work, memload, i)
		if i >= 0 {
			rawDump, rawRestore = append(rawDump, rd), append(rawRestore, rr)
			stop, start, plain = append(stop, s), append(start, st), append(plain, p)
		}
	}
	_, stopMid, _ := spread(stop, wallOf)
	_, startMid, _ := spread(start, wallOf)
	_, plainMid, _ := spread(plain, wallOf)
	_, dumpMid, _ := spread(rawDump, wallOf)
	_, restoreMid, _ := spread(rawRestore, wallOf)
	fmt.Printf("\nreboot: %d persisted memload workloads of %d MiB, %d rounds, interleaved\n\n", *rebootN, *rebootMiB, *rounds)
	fmt.Printf("%-34s %24s %24s %8s\n", "(ms)", "raw criu min/med/max", "ckptd min/med/max", "ratio")
	fmt.Printf("%-34s %24s %24s %8s\n", "shutdown: stop with the checkpoints", mmmWall(rawDump), mmmWall(stop), ratio(stopMid, dumpMid))
	fmt.Printf("%-34s %24s %24s %8s\n", "start: until all of them run", mmmWall(rawRestore), mmmWall(start), ratio(startMid, restoreMid))
	fmt.Printf("(raw criu: one dump after the other, then sync, then one restore after the other; a ckptd stop with nothing\n")
	fmt.Printf(" persisted takes %.1f ms median:", ms(plainMid))
	fmt.Printf(" the shutdown's checkpoints add %.1f ms to the stop, against a TimeoutStopSec of 5 min)\n", ms(stopMid-plainMid))
}

// rawReboot dumps N raw memloads one after the other, then restores them
// one after the other, and returns both totals.
func rawReboot(work, memload string, round int) (dump, restore sample) {
	whole := *mib
	*mib = *rebootMiB
	defer func() { *mib = whole }()
	var pids []int
	for n := range *rebootN {
		pids = append(pids, startRawLoad(work, memload, fmt.Sprintf("rawboot-%d-%d", round+1, n)).Process.Pid)
	}
	dirs := make([]string, len(pids))
	start := time.Now()
	for n, pid := range pids {
		dirs[n] = filepath.Join(work, fmt.Sprintf("rawboot-%d-%d", round+1, n))
		check(os.MkdirAll(dirs[n], 0o700))
		run("criu", "dump", "-t", strconv.Itoa(pid), "-D", dirs[n], "-o", "dump.log")
	}
	run("sync") // durable, as ckptd's are before it exits
	dump = sample{wall: time.Since(start)}
	start = time.Now()
	var restored []int
	for _, dir := range dirs {
		pidfile := filepath.Join(dir, "restored.pid")
		run("criu", "restore", "-D", dir, "-o", "restore.log", "-d", "--pidfile", pidfile)
		pid, err := strconv.Atoi(strings.TrimSpace(readFile(pidfile)))
		check(err)
		restored = append(restored, pid)
	}
	restore = sample{wall: time.Since(start)}
	for n, pid := range restored {
		check(syscall.Kill(pid, syscall.SIGKILL))
		os.RemoveAll(dirs[n])
	}
	return dump, restore
}

// ckptdReboot runs N persisted workloads under a ckptd of its own, times
// its stop (which checkpoints them) and its next start until they all
// run, then a stop with nothing persisted.
func ckptdReboot(work, memload string, round int) (stop, start, plain sample) {
	name := fmt.Sprintf("reboot-%d", round+1)
	d := startDaemon(work, name, filepath.Join(work, "no-containerd.sock"), "--checkpoint-on-stop")
	var names []string
	for n := range *rebootN {
		w := fmt.Sprintf("p%d", n)
		d.ctl("run", "--persist", "--name", w, "--net", "host", "--", memload, "--mib", strconv.Itoa(*rebootMiB))
		names = append(names, w)
	}
	for _, w := range names {
		waitReady(filepath.Join(d.root, "workloads", w, "output.log"))
	}
	stop = sample{wall: d.timedStop()}
	t0 := time.Now()
	d.restart()
	for len(d.running()) < len(names) {
		if time.Since(t0) > 5*time.Minute {
			fatalf("the persisted workloads were not restored within 5 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start = sample{wall: time.Since(t0)}
	for _, w := range names {
		d.ctl("persist", w, "off")
		d.ctl("kill", w)
	}
	plain = sample{wall: d.timedStop()}
	os.RemoveAll(d.root)
	return stop, start, plain
}

// timedStop stops ckptd as a service manager would (SIGTERM) and waits.
func (d *daemon) timedStop() time.Duration {
	start := time.Now()
	check(d.cmd.Process.Signal(syscall.SIGTERM))
	d.cmd.Wait()
	return time.Since(start)
}

// restart starts the same ckptd again on its root and socket.
func (d *daemon) restart() {
	argv := d.cmd.Args
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stderr = os.Stderr
	check(d.cmd.Start())
	atFatal(func() { d.cmd.Process.Kill() })
}

// running lists the workloads this ckptd runs (none while it starts).
func (d *daemon) running() []string {
	out, err := exec.Command(filepath.Join(*binDir, "ckptctl"), "--socket", d.socket, "ps", "-o", "json").Output()
	if err != nil {
		return nil
	}
	var ts []struct {
		Ref     struct{ Name string } `json:"ref"`
		Running bool                  `json:"running"`
	}
	check(json.Unmarshal(out, &ts))
	var names []string
	for _, t := range ts {
		if t.Running {
			names = append(names, t.Ref.Name)
		}
	}
	return names
}
