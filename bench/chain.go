package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchChain checkpoints one *mib job ten times, the job rewriting 5 % of
// its memory in between (memload on SIGUSR2), and measures: the disk the
// ten take against ten whole ones; the frozen time of each against raw
// CRIU's full --leave-running dump of the same process, in turns; the
// restore of the tenth (through its chain) against the first (whole), in
// turns; and rm --relink of checkpoints 2-9, after which 1 and 10 must
// restore with the memory they had.
func benchChain(work string) {
	memload := buildMemload(work)
	d := startDaemon(work, "chain", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	d.ctl("run", "--name", "job", "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	pid, logPath := workloadPID(d, "job")
	waitReady(logPath)
	defer d.ctl("kill", "job")

	var cs []created
	var hashes []string
	var rawS, ctlS []sample
	for i := range 10 {
		if i > 0 {
			churnLoad(pid, logPath, i)
		}
		hashes = append(hashes, memHash(pid, logPath))
		dir := filepath.Join(work, "chain-raw")
		check(os.MkdirAll(dir, 0o700))
		start := time.Now()
		run("criu", "dump", "--leave-running", "-t", strconv.Itoa(pid), "-D", dir, "-o", "dump.log", "-v4")
		rawS = append(rawS, sample{wall: time.Since(start), frozen: frozen(dir)})
		os.RemoveAll(dir)
		start = time.Now()
		c := createJSON(d, "--leave-running", "job")
		ctlS = append(ctlS, sample{wall: time.Since(start), frozen: time.Duration(c.Stats.FrozenTime) * time.Microsecond})
		cs = append(cs, c)
	}
	var stored int64
	for _, c := range cs {
		stored += c.Size
	}
	froz := func(s sample) time.Duration { return s.frozen }
	fmt.Printf("\nincremental storage: ten --leave-running checkpoints of one %d MiB job rewriting 5 %% of its memory in between\n\n", *mib)
	fmt.Printf("disk: %.2f GiB for the ten (the first, whole: %.2f GiB; ten whole ones: %.2f GiB)\n",
		gib(stored), gib(cs[0].Size), gib(cs[0].Size*10))
	fmt.Printf("%-32s %24s %24s %8s\n", "measure (s)", "raw criu min/med/max", "ckptctl min/med/max", "ratio")
	_, rawMid, _ := spread(rawS[1:], froz)
	_, ctlMid, _ := spread(ctlS[1:], froz)
	fmt.Printf("%-32s %24s %24s %8s\n", "frozen time, checkpoints 2-10", mmm(rawS[1:], froz), mmm(ctlS[1:], froz), ratio(ctlMid, rawMid))
	fmt.Printf("%-32s %24.3f %24.3f %8s\n", "frozen time, checkpoint 10", rawS[9].frozen.Seconds(), ctlS[9].frozen.Seconds(), ratio(ctlS[9].frozen, rawS[9].frozen))
	_, rawMid, _ = spread(rawS[1:], wallOf)
	_, ctlMid, _ = spread(ctlS[1:], wallOf)
	fmt.Printf("%-32s %24s %24s %8s\n", "wall (ckptctl: deduped, sealed)", mmm(rawS[1:], wallOf), mmm(ctlS[1:], wallOf), ratio(ctlMid, rawMid))

	var whole, tenth []sample
	for i := -1; i < *rounds; i++ { // round -1 warms up
		w := timedRestore(d, cs[0].Name, "copy-whole")
		t := timedRestore(d, cs[9].Name, "copy-tenth")
		if i >= 0 {
			whole, tenth = append(whole, w), append(tenth, t)
		}
	}
	_, wMid, _ := spread(whole, wallOf)
	_, tMid, _ := spread(tenth, wallOf)
	fmt.Printf("%-32s %24s %24s %8s\n", "restore: 1st (whole) / 10th", mmm(whole, wallOf), mmm(tenth, wallOf), ratio(tMid, wMid))

	start := time.Now()
	names := make([]string, 0, 8)
	for _, c := range cs[1:9] {
		names = append(names, c.Name)
	}
	d.ctl(append([]string{"rm", "--relink"}, names...)...)
	rm := time.Since(start)
	var left int64
	for _, n := range []string{cs[0].Name, cs[9].Name} {
		left += sizeOf(d, n)
	}
	ok := restoredHash(d, cs[0].Name) == hashes[0] && restoredHash(d, cs[9].Name) == hashes[9]
	fmt.Printf("rm --relink of checkpoints 2-9: %.3f s; 1 and 10 then take %.2f GiB and restore with the memory they had: %v\n",
		rm.Seconds(), gib(left), ok)
	if !ok {
		check(fmt.Errorf("after rm --relink, checkpoint 1 or 10 restored with other memory"))
	}
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }

// workloadPID returns a running workload's host PID and log.
func workloadPID(d *daemon, name string) (int, string) {
	var ts []struct {
		Ref struct {
			Name    string `json:"name"`
			PID     int    `json:"pid"`
			LogPath string `json:"log_path"`
		} `json:"ref"`
	}
	check(json.Unmarshal([]byte(d.ctl("ps", "-o", "json")), &ts))
	for _, t := range ts {
		if t.Ref.Name == name {
			return t.Ref.PID, t.Ref.LogPath
		}
	}
	check(fmt.Errorf("workload %s is not running", name))
	return 0, ""
}

func sizeOf(d *daemon, name string) int64 {
	var c created
	check(json.Unmarshal([]byte(d.ctl("inspect", "-o", "json", name)), &struct {
		Checkpoint *created `json:"checkpoint"`
	}{&c}))
	return c.Size
}

// churnLoad has memload rewrite its next 5 % and waits until it has.
func churnLoad(pid int, logPath string, gen int) {
	check(syscall.Kill(pid, syscall.SIGUSR2))
	waitLine(logPath, fmt.Sprintf("churned gen=%d\n", gen))
}

var hashRE = regexp.MustCompile(`hash=([0-9a-f]+)`)

// memHash asks memload for its memory's hash.
func memHash(pid int, logPath string) string {
	before := len(hashRE.FindAllString(readFile(logPath), -1))
	check(syscall.Kill(pid, syscall.SIGUSR1))
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(5 * time.Millisecond) {
		if all := hashRE.FindAllStringSubmatch(readFile(logPath), -1); len(all) > before {
			return all[len(all)-1][1]
		}
	}
	check(fmt.Errorf("memload %d gave no hash", pid))
	return ""
}

func waitLine(logPath, line string) {
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(5 * time.Millisecond) {
		if strings.Contains(readFile(logPath), line) {
			return
		}
	}
	check(fmt.Errorf("%s: no %q", logPath, strings.TrimSpace(line)))
}

func timedRestore(d *daemon, ckpt, name string) sample {
	start := time.Now()
	d.ctl("restore", ckpt, "--name", name)
	s := sample{wall: time.Since(start)}
	d.ctl("kill", name)
	return s
}

// restoredHash restores ckpt as a copy and returns its memory's hash.
func restoredHash(d *daemon, ckpt string) string {
	d.ctl("restore", ckpt, "--name", "probe")
	defer d.ctl("kill", "probe")
	return memHash(workloadPID(d, "probe"))
}
