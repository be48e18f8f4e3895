package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// benchSnapshots takes successive --leave-running checkpoints of one
// running target, raw `criu dump --leave-running` and ckptctl in turns,
// and compares the target's downtime (CRIU's frozen_time).
func benchSnapshots(work string) {
	memload := buildMemload(work)
	d := startDaemon(work, "snap", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	raw := startRawLoad(work, memload, "snap-raw")
	defer raw.Process.Kill()
	d.ctl("run", "--name", "snaps", "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	waitReady(filepath.Join(d.root, "workloads", "snaps", "output.log"))
	defer d.ctl("kill", "snaps")

	var rawS, ctlS, sealed []sample
	for i := -1; i < *nsnap; i++ { // round -1 warms up
		dir := filepath.Join(work, fmt.Sprintf("snap-raw-%d", i))
		check(os.MkdirAll(dir, 0o700))
		start := time.Now()
		run("criu", "dump", "--leave-running", "-t", strconv.Itoa(raw.Process.Pid), "-D", dir, "-o", "dump.log", "-v4")
		r := sample{wall: time.Since(start), frozen: frozen(dir)}
		os.RemoveAll(dir)

		start = time.Now()
		c := createJSON(d, "--leave-running", "snaps")
		s := sample{wall: time.Since(start), frozen: time.Duration(c.Stats.FrozenTime) * time.Microsecond}
		d.ctl("rm", c.Name)
		if i >= 0 {
			rawS, ctlS = append(rawS, r), append(ctlS, s)
			sealed = append(sealed, sample{wall: c.Sealed.Sub(c.Created)})
		}
	}
	froz := func(s sample) time.Duration { return s.frozen }
	fmt.Printf("\nsuccessive --leave-running checkpoints of one %d MiB target, %d rounds, interleaved\n\n", *mib, *nsnap)
	fmt.Printf("%-22s %24s %24s %8s\n", "measure (s)", "raw criu min/med/max", "ckptctl min/med/max", "ratio")
	_, rawMid, _ := spread(rawS, froz)
	_, ctlMid, _ := spread(ctlS, froz)
	fmt.Printf("%-22s %24s %24s %8s\n", "downtime (frozen_time)", mmm(rawS, froz), mmm(ctlS, froz), ratio(ctlMid, rawMid))
	_, rawMid, _ = spread(rawS, wallOf)
	_, ctlMid, _ = spread(ctlS, wallOf)
	fmt.Printf("%-22s %24s %24s %8s\n", "wall (ckptctl: sealed)", mmm(rawS, wallOf), mmm(ctlS, wallOf), ratio(ctlMid, rawMid))
	fmt.Printf("%-22s %24s %24s\n", "sealed after commit", "-", mmm(sealed, wallOf))
	fmt.Println("(raw criu's images are neither hashed nor fsynced; ckptctl's are, after the target runs again)")
}

type created struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Size    int64     `json:"size,string"`
	Created time.Time `json:"-"`
	Sealed  time.Time `json:"-"`
	Stats   struct {
		FrozenTime int64 `json:"frozen_time"`
	} `json:"stats"`
	CreatedNano int64 `json:"created_unix_nano,string"`
	SealedNano  int64 `json:"sealed_unix_nano,string"`
}

func createJSON(d *daemon, args ...string) created {
	var c created
	check(json.Unmarshal([]byte(d.ctl(append([]string{"create", "-o", "json"}, args...)...)), &c))
	c.Created, c.Sealed = time.Unix(0, c.CreatedNano), time.Unix(0, c.SealedNano)
	return c
}

// benchStore fills a store with checkpoints of a *mib workload, then
// measures ckptd's start-up time (exec to socket, page cache dropped
// before each start) against an empty store's, in turns, and the
// throughput of `ckptctl verify`, warm and cold.
func benchStore(work string) {
	memload := buildMemload(work)
	empty := filepath.Join(work, "empty-state")
	// Whole checkpoints: the start-up must face the store's full size.
	d := startDaemon(work, "full", filepath.Join(work, "no-containerd.sock"), "--chain-depth", "0")
	d.ctl("run", "--name", "filler", "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	waitReady(filepath.Join(d.root, "workloads", "filler", "output.log"))
	var total int64
	var last string
	for total < int64(*storeG)<<30 {
		c := createJSON(d, "--leave-running", "filler")
		total += c.Size
		last = c.Name
	}
	verify := func() sample {
		start := time.Now()
		d.ctl("verify", last)
		return sample{wall: time.Since(start)}
	}
	var warm, cold []sample
	verify() // warms the cache
	for range *rounds {
		warm = append(warm, verify())
		dropCaches()
		cold = append(cold, verify())
	}
	d.ctl("kill", "filler")
	d.stop()

	var emptyS, fullS []sample
	for i := -1; i < *rounds; i++ {
		e := timeStart(work, empty)
		f := timeStart(work, d.root)
		if i >= 0 {
			emptyS, fullS = append(emptyS, e), append(fullS, f)
		}
	}
	fmt.Printf("\nstart-up (exec to API socket, page cache dropped first), %d rounds, interleaved\n\n", *rounds)
	_, eMid, _ := spread(emptyS, wallOf)
	_, fMid, _ := spread(fullS, wallOf)
	fmt.Printf("%-34s %24s\n", "store", "min/med/max (s)")
	fmt.Printf("%-34s %24s\n", "empty", mmm(emptyS, wallOf))
	fmt.Printf("%-34s %24s   (median %+.3f s against empty)\n",
		fmt.Sprintf("%.1f GiB in %d checkpoints", float64(total)/(1<<30), countCheckpoints(d.root)), mmm(fullS, wallOf), (fMid - eMid).Seconds())
	size := float64(total) / float64(countCheckpoints(d.root))
	_, wMid, _ := spread(warm, wallOf)
	_, cMid, _ := spread(cold, wallOf)
	fmt.Printf("\nckptctl verify of one %.0f MiB checkpoint: warm median %.3f s (%.2f GB/s), cold median %.3f s (%.2f GB/s)\n",
		size/(1<<20), wMid.Seconds(), size/wMid.Seconds()/1e9, cMid.Seconds(), size/cMid.Seconds()/1e9)
	os.RemoveAll(d.root)
}

func countCheckpoints(root string) int {
	entries, _ := os.ReadDir(filepath.Join(root, "checkpoints"))
	return len(entries)
}

func dropCaches() {
	syscall.Sync()
	check(os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200))
}

// timeStart measures one ckptd start on root, from exec to a connectable
// socket, with the page cache dropped first.
func timeStart(work, root string) sample {
	socket := filepath.Join(work, "startup.sock")
	dropCaches()
	start := time.Now()
	cmd := exec.Command(filepath.Join(*binDir, "ckptd"), "--root", root, "--socket", socket, "--log-level", *dlog,
		"--containerd", filepath.Join(work, "no-containerd.sock"))
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for time.Since(start) < time.Minute {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return sample{wall: time.Since(start)}
		}
		time.Sleep(time.Millisecond)
	}
	check(fmt.Errorf("ckptd on %s did not start within a minute", root))
	return sample{}
}
