// Command bench measures ckptctl create/restore against raw criu dump/restore
// on the same workload in the same run, and prints figures and ratios.
// Run it with `make bench` (root, CRIU installed, binaries built).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"
)

var (
	mib    = flag.Int("mib", 1024, "workload size in MiB")
	rounds = flag.Int("rounds", 3, "rounds per measurement (min, median and max are reported)")
	binDir = flag.String("bin", "bin", "directory with ckptd and ckptctl")
	procs  = flag.Bool("processes", true, "benchmark memload against raw criu")
	pmibs  = flag.String("process-mib", "", "comma-separated memload sizes in MiB for the processes part (default: --mib)")
	ctrs   = flag.Bool("containers", true, "benchmark a container against ctr and podman")
	migr   = flag.Bool("migrate", true, "benchmark ckptctl migrate against a hand-run CRIU page-server pipeline")
	links  = flag.Bool("link", true, "benchmark migration over a veth shaped to 1 Gbit/s: stop-and-copy, pre-copy, post-copy and the hand CRIU pipeline")
	dlog   = flag.String("daemon-log-level", "warn", "log level of the ckptd under test (its log goes to stderr)")
	snaps  = flag.Bool("snapshots", true, "benchmark successive --leave-running checkpoints of one target against raw criu")
	appsOn = flag.Bool("apps", true, "benchmark --leave-running checkpoints of redis, nginx and python http.server against raw criu")
	nsnap  = flag.Int("snapshot-rounds", 5, "successive --leave-running checkpoints per tool")
	chains = flag.Bool("chain", true, "benchmark incremental checkpoints of a job rewriting 5 % of its memory")
	arch   = flag.Bool("archive", true, "benchmark export, import, push and pull against tar and zstd")
	store  = flag.Bool("store", true, "benchmark start-up time against store size, and verify throughput")
	storeG = flag.Int("store-gib", 20, "GiB of checkpoints for the start-up benchmark")
)

type sample struct {
	wall   time.Duration
	frozen time.Duration // CRIU's frozen_time, dumps only
	sync   time.Duration // of it, ckptd's wait for the disk (commit_sync)
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	work, err := os.MkdirTemp("/var/tmp", "ckptd-bench-")
	check(err)
	defer os.RemoveAll(work)
	atFatal(func() { os.RemoveAll(work) })
	if *procs {
		for _, size := range processSizes() {
			whole := *mib
			*mib = size
			benchProcesses(work)
			*mib = whole
		}
	}
	if *snaps {
		benchSnapshots(work)
	}
	if *appsOn {
		benchApps(work)
	}
	if *wakeOn {
		benchWake(work)
	}
	if *groupOn {
		benchGroup(work)
	}
	if *warmOn {
		benchWarm(work)
	}
	if *rebootOn {
		benchReboot(work)
	}
	if *chains {
		benchChain(work)
	}
	if *arch {
		benchArchive(work)
	}
	if *store {
		benchStore(work)
	}
	if *ctrs {
		benchContainers(work)
	}
	if *migr {
		benchMigrate(work)
	}
	if *links {
		benchLink(work)
	}
}

func benchProcesses(work string) {
	memload := buildMemload(work)

	var rawDump, rawRestore, ctlDump, ctlRestore, chain2, chain16 []sample
	// A daemon (and state) per size: a workload log of the last size
	// would say "ready" before this one's memory is there.
	d := startDaemon(work, fmt.Sprintf("proc-%d", *mib), filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	// One untimed round of each warms the page cache and both paths; then
	// the tools take turns, so that the VM's drift hits both alike.
	rawRound(work, memload, warmUp)
	d.round(memload, warmUp)
	d.chainRound(memload, warmUp, 2)
	for i := range *rounds {
		rd, rr := rawRound(work, memload, i)
		rawDump, rawRestore = append(rawDump, rd), append(rawRestore, rr)
		cd, cr := d.round(memload, i)
		ctlDump, ctlRestore = append(ctlDump, cd), append(ctlRestore, cr)
		chain2 = append(chain2, d.chainRound(memload, i, 2))
		chain16 = append(chain16, d.chainRound(memload, i, 16))
	}
	report(rawDump, rawRestore, ctlDump, ctlRestore)
	_, rawMid, _ := spread(rawRestore, wallOf)
	for _, c := range []struct {
		name    string
		samples []sample
	}{{"restore, chain of 2", chain2}, {"restore, chain of 16", chain16}} {
		_, mid, _ := spread(c.samples, wallOf)
		fmt.Printf("%-20s %22s %24s %8s\n", c.name, mmm(rawRestore, wallOf), mmm(c.samples, wallOf), ratio(mid, rawMid))
	}
	fmt.Println("(chain of N: N-1 --leave-running checkpoints with 5 % of the memory rewritten after each, then one that")
	fmt.Println(" stops the target; each stores only what changed and the last restores through its parents; raw criu restores a whole dump)")
}

// chainRound checkpoints a workload links times, each storing only what
// changed, and times the restore of the last, through its parents.
func (d *daemon) chainRound(memload string, i, links int) sample {
	name := fmt.Sprintf("chain%d-%d", links, i)
	d.ctl("run", "--name", name, "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	waitReady(filepath.Join(d.root, "workloads", name, "output.log"))
	first := createJSON(d, "--leave-running", name)
	for range links - 2 {
		rewrite(d, name)
		createJSON(d, "--leave-running", name)
	}
	rewrite(d, name)
	last := createJSON(d, name)
	start := time.Now()
	d.ctl("restore", last.Name)
	restore := sample{wall: time.Since(start)}
	d.ctl("kill", name)
	d.ctl("rm", "--recursive", first.Name)
	return restore
}

// rewrite has memload rewrite 5 % of its memory.
func rewrite(d *daemon, name string) {
	d.ctl("kill", "-s", "USR2", name)
	time.Sleep(200 * time.Millisecond)
}

// processSizes are the memload sizes of the processes part.
func processSizes() []int {
	if *pmibs == "" {
		return []int{*mib}
	}
	var out []int
	for _, f := range strings.Split(*pmibs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			check(fmt.Errorf("--process-mib %q: want sizes in MiB, comma-separated", *pmibs))
		}
		out = append(out, n)
	}
	return out
}

// rawRound launches memload as pid 1 of a new PID namespace, as ckptd does,
// and dumps and restores it with the criu command line.
func rawRound(work, memload string, i int) (sample, sample) {
	dir := filepath.Join(work, fmt.Sprintf("raw-%d", i))
	check(os.MkdirAll(dir, 0o700))
	cmd := startRawLoad(work, memload, fmt.Sprintf("raw-%d", i))

	start := time.Now()
	run("criu", "dump", "-t", strconv.Itoa(cmd.Process.Pid), "-D", dir, "-o", "dump.log", "-v4")
	dump := sample{wall: time.Since(start), frozen: frozen(dir)}

	pidfile := filepath.Join(work, fmt.Sprintf("raw-%d.pid", i))
	start = time.Now()
	run("criu", "restore", "-D", dir, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile)
	restore := sample{wall: time.Since(start)}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(pidfile)))
	check(err)
	// criu restore will not overwrite a pidfile: the next part's round
	// of the same number needs the name again.
	check(os.Remove(pidfile))
	check(syscall.Kill(pid, syscall.SIGKILL))
	os.RemoveAll(dir)
	return dump, restore
}

func buildMemload(work string) string {
	memload := filepath.Join(work, "memload")
	if _, err := os.Stat(memload); err != nil {
		run("go", "build", "-o", memload, "./test/memload")
	}
	return memload
}

// startRawLoad starts memload as pid 1 of a new PID namespace, as ckptd
// does, and waits until it filled its memory.
func startRawLoad(work, memload, name string) *exec.Cmd {
	return startRawLoadIn("", work, memload, name)
}

// startRawLoadIn is startRawLoad in network namespace ns ("": this one),
// with extra flags.
func startRawLoadIn(ns, work, memload, name string, extra ...string) *exec.Cmd {
	out, err := os.Create(filepath.Join(work, name+".log"))
	check(err)
	defer out.Close()
	argv := in(ns, append([]string{memload, "--mib", strconv.Itoa(*mib)}, extra...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID}
	check(cmd.Start())
	atFatal(func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
	go cmd.Wait()
	waitReady(out.Name())
	return cmd
}

func frozen(dir string) time.Duration {
	f, err := os.Open(dir)
	check(err)
	defer f.Close()
	st, err := stats.CriuGetDumpStats(f)
	check(err)
	return time.Duration(st.GetFrozenTime()) * time.Microsecond
}

type daemon struct {
	cmd          *exec.Cmd
	socket, root string
	stopOnce     sync.Once
}

func startDaemon(work, name, containerd string, extra ...string) *daemon {
	return startDaemonWrapped(nil, work, name, containerd, extra...)
}

// startDaemonWrapped starts ckptd through the command wrap (a network
// namespace's ip netns exec), which execs it.
func startDaemonWrapped(wrap []string, work, name, containerd string, extra ...string) *daemon {
	d := &daemon{socket: filepath.Join(work, name+".sock"), root: filepath.Join(work, name+"-state")}
	// --trust-root: the benchmark's own workloads run as root, and come
	// back from archives, registries and peers.
	argv := append(append(append([]string{}, wrap...), filepath.Join(*binDir, "ckptd")), "--root", d.root, "--socket", d.socket, "--log-level", *dlog,
		"--containerd", containerd, "--trust-root")
	argv = append(argv, extra...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stderr = os.Stderr
	check(d.cmd.Start())
	atFatal(d.stop)
	for range 100 {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	fatalf("ckptd did not start")
	return nil
}

// stop ends the workloads this ckptd still runs (a benchmark that failed
// leaves some), then ckptd, which lets go of their networks as it stops.
func (d *daemon) stop() {
	d.stopOnce.Do(func() {
		ctl := filepath.Join(*binDir, "ckptctl")
		if out, err := exec.Command(ctl, "--socket", d.socket, "ps", "-q").Output(); err == nil {
			for _, name := range strings.Fields(string(out)) {
				exec.Command(ctl, "--socket", d.socket, "kill", name).Run()
			}
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	})
}

func (d *daemon) ctl(args ...string) string {
	return run(filepath.Join(*binDir, "ckptctl"), append([]string{"--socket", d.socket}, args...)...)
}

func (d *daemon) round(memload string, i int) (sample, sample) {
	name := fmt.Sprintf("bench%d", i)
	d.ctl("run", "--name", name, "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	waitReady(filepath.Join(d.root, "workloads", name, "output.log"))

	start := time.Now()
	out := d.ctl("create", "-o", "json", name)
	dump := sample{wall: time.Since(start)}
	var c struct {
		Name  string `json:"name"`
		Stats struct {
			FrozenTime int64 `json:"frozen_time"`
			CommitSync int64 `json:"commit_sync"`
		} `json:"stats"`
	}
	check(json.Unmarshal([]byte(out), &c))
	dump.frozen = time.Duration(c.Stats.FrozenTime) * time.Microsecond
	dump.sync = time.Duration(c.Stats.CommitSync) * time.Microsecond

	start = time.Now()
	d.ctl("restore", c.Name)
	restore := sample{wall: time.Since(start)}
	d.ctl("kill", name)
	d.ctl("rm", c.Name)
	return dump, restore
}

// warmUp numbers the untimed first round of each tool.
const warmUp = 1000

func report(rawDump, rawRestore, ctlDump, ctlRestore []sample) {
	froz := func(s sample) time.Duration { return s.frozen }
	unsynced := func(s sample) time.Duration { return s.frozen - s.sync }
	fmt.Printf("workload: memload %d MiB, %d rounds, interleaved\n\n", *mib, *rounds)
	fmt.Printf("%-18s %24s %24s %8s\n", "measure (s)", "raw criu min/med/max", "ckptctl min/med/max", "ratio")
	for _, r := range []struct {
		name     string
		raw, ctl []sample
		f        func(sample) time.Duration
	}{
		{"dump wall", rawDump, ctlDump, wallOf},
		{"dump frozen_time", rawDump, ctlDump, froz},
		{"  less disk sync", rawDump, ctlDump, unsynced},
		{"restore wall", rawRestore, ctlRestore, wallOf},
	} {
		_, rawMid, _ := spread(r.raw, r.f)
		_, ctlMid, _ := spread(r.ctl, r.f)
		fmt.Printf("%-18s %24s %24s %8s\n", r.name, mmm(r.raw, r.f), mmm(r.ctl, r.f), ratio(ctlMid, rawMid))
	}
	fmt.Printf("%-18s %24s %24s\n", "  the disk sync", "-", mmm(ctlDump, func(s sample) time.Duration { return s.sync }))
	fmt.Println("(ratio: ckptctl's median over raw criu's; the disk sync is ckptd's wait, in the freeze, for the")
	fmt.Println(" images to reach the disk, which raw criu does not do; \"less disk sync\" takes it out of ckptctl's frozen_time)")
}

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2fx", float64(a)/float64(b)) }

func waitReady(logPath string) {
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(readFile(logPath), "ready") {
		if time.Now().After(deadline) {
			fatalf("workload did not become ready: %s", logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func run(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		if name == "criu" {
			msg += criuErrors(args)
		}
		fatalf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return string(out)
}

func check(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}
