package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchMigrate moves memload between two ckptds over loopback and compares
// the downtime with the same move done by hand with CRIU: a page server
// on the destination, dump to it, copy the remaining images, restore.
func benchMigrate(work string) {
	memload := buildMemload(work)
	var ctlDown, ctlTotal []sample
	pki := filepath.Join(work, "pki")
	ctl := filepath.Join(*binDir, "ckptctl")
	run(ctl, "certs", "ca", filepath.Join(pki, "ca"))
	for _, h := range []string{"src", "dst"} {
		run(ctl, "certs", "host", h, "--ca", filepath.Join(pki, "ca"), "--out", filepath.Join(pki, h), "--ip", "127.0.0.1")
	}
	peer := "127.0.0.1:" + freePort()
	none := filepath.Join(work, "no-containerd.sock")
	src := startDaemon(work, "msrc", none, "--peer-certs", filepath.Join(pki, "src"))
	defer src.stop()
	dst := startDaemon(work, "mdst", none, "--peer-certs", filepath.Join(pki, "dst"), "--peer-listen", peer)
	defer dst.stop()
	// One untimed round of each warms the page cache; then they take turns.
	hands := []*handVariant{
		{name: "hand criu, source killed by dump"},
		{name: "hand criu, source held", hold: true},
		{name: "hand criu --tls, source held", hold: true, tls: pki},
	}
	for k, h := range hands {
		rawMigrateRound(work, memload, warmUp+k, h)
	}
	// The same migration with the page stream over one connection.
	single := startDaemon(work, "msrc1", none, "--peer-certs", filepath.Join(pki, "src"), "--peer-streams", "1")
	defer single.stop()
	var oneDown []sample
	ckptctlMigrate(src, dst, memload, peer, "mig", warmUp)
	ckptctlMigrate(single, dst, memload, peer, "one", warmUp)
	for i := range *rounds {
		for k, h := range hands {
			h.phases = append(h.phases, rawMigrateRound(work, memload, len(hands)*i+k, h))
		}
		total, down := ckptctlMigrate(src, dst, memload, peer, "mig", i)
		ctlTotal, ctlDown = append(ctlTotal, total), append(ctlDown, down)
		_, down = ckptctlMigrate(single, dst, memload, peer, "one", i)
		oneDown = append(oneDown, down)
	}
	base := hands[0].downs()
	fmt.Printf("\nmigration over loopback: memload %d MiB, %d rounds, interleaved\n\n", *mib, *rounds)
	fmt.Printf("%-34s %24s %8s\n", "downtime, frozen to running (s)", "min/med/max", "ratio")
	for _, h := range hands {
		fmt.Printf("%-34s %24s %8s\n", h.name, mmm(h.downs(), wallOf), ratio(median(h.downs()), median(base)))
	}
	fmt.Printf("%-34s %24s %8s\n", fmt.Sprintf("ckptctl migrate, %d streams", min(runtime.NumCPU(), 4)), mmm(ctlDown, wallOf), ratio(median(ctlDown), median(base)))
	fmt.Printf("%-34s %24s %8s\n", "ckptctl migrate, one stream", mmm(oneDown, wallOf), ratio(median(oneDown), median(base)))
	fmt.Printf("%-34s %24s %8s\n", "ckptctl migrate, command wall", mmm(ctlTotal, wallOf), ratio(median(ctlTotal), median(base)))
	fmt.Println("(ratio: median over the first hand pipeline's; only ckptctl and --tls encrypt and authenticate the pages)")
	fmt.Print("\nphases, median (s): ckptctl migrate:")
	for _, name := range []string{"dump", "files", "restore", "release"} {
		if ps := ctlPhases[name]; len(ps) > 0 {
			fmt.Printf(" %s %.3f", name, median(ps).Seconds())
		}
	}
	fmt.Println()
	for _, h := range hands {
		fmt.Printf("  %s: dump+pages %.3f, copy %.3f, restore %.3f\n", h.name,
			medianOf(h.phases, func(p handPhases) time.Duration { return p.dump }).Seconds(),
			medianOf(h.phases, func(p handPhases) time.Duration { return p.copy }).Seconds(),
			medianOf(h.phases, func(p handPhases) time.Duration { return p.restore }).Seconds())
	}
}

// ctlPhases collects ckptctl migrate's downtime phases, by name.
var ctlPhases = map[string][]sample{}

// handPhases are one hand-run migration's downtime and its parts.
type handPhases struct{ down, dump, copy, restore time.Duration }

func medianOf(ps []handPhases, f func(handPhases) time.Duration) time.Duration {
	s := make([]sample, len(ps))
	for i, p := range ps {
		s[i] = sample{wall: f(p)}
	}
	return median(s)
}

// handVariant is one way to run the hand pipeline. CRIU's dump kills the
// source when it ends, so a failed restore loses the workload; with hold,
// the source is left stopped (--leave-stopped) and killed only once the
// copy runs, as ckptd does. With tls (the certificates' directory), the
// page server and the dump speak CRIU's own TLS, as ckptd's stream does.
type handVariant struct {
	name   string
	hold   bool
	tls    string
	phases []handPhases
	// srcNS and dstNS, when set, are the network namespaces the source
	// (workload and dump) and the destination (page server and restore)
	// run in, joined at addr; churn makes the workload rewrite memory.
	srcNS, dstNS, addr string
	churn              bool
}

// in runs a command in network namespace ns, if any. nsenter, not ip
// netns exec, which would give each command a mount namespace of its own
// (and CRIU would then see the workload's as one to dump).
func in(ns string, args ...string) []string {
	if ns == "" {
		return args
	}
	return append([]string{"nsenter", "--net=/run/netns/" + ns}, args...)
}

func (h *handVariant) downs() []sample {
	s := make([]sample, len(h.phases))
	for i, p := range h.phases {
		s[i] = sample{wall: p.down}
	}
	return s
}

// tlsArgs are CRIU's TLS flags with host's certificates.
func (h *handVariant) tlsArgs(host string) []string {
	if h.tls == "" {
		return nil
	}
	dir := filepath.Join(h.tls, host)
	return []string{"--tls", "--tls-cacert", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "cert.pem"),
		"--tls-key", filepath.Join(dir, "key.pem")}
}

// rawMigrateRound is the hand-run pipeline; its downtime runs from the
// dump's start to the restore's end, like ckptctl's.
func rawMigrateRound(work, memload string, i int, h *handVariant) handPhases {
	srcDir := filepath.Join(work, fmt.Sprintf("hand-src-%d", i))
	dstDir := filepath.Join(work, fmt.Sprintf("hand-dst-%d", i))
	check(os.MkdirAll(srcDir, 0o700))
	check(os.MkdirAll(dstDir, 0o700))
	defer os.RemoveAll(srcDir)
	defer os.RemoveAll(dstDir)
	var cmd *exec.Cmd
	if h.churn {
		cmd = startRawLoadIn(h.srcNS, work, memload, fmt.Sprintf("hand-%d", i), "--churn", strconv.Itoa(churnPercent))
		stop := churn(cmd.Process.Pid)
		time.Sleep(time.Second)
		defer stop()
	} else {
		cmd = startRawLoad(work, memload, fmt.Sprintf("hand-%d", i))
	}

	// -d returns once the page server listens; it serves one dump and exits.
	port, addr := freePort(), cmp.Or(h.addr, "127.0.0.1")
	psPid := filepath.Join(work, fmt.Sprintf("hand-ps-%d.pid", i))
	ps := in(h.dstNS, append([]string{"criu", "page-server", "-D", dstDir, "--address", addr, "--port", port, "-o", "ps.log",
		"-d", "--pidfile", psPid}, h.tlsArgs("dst")...)...)
	run(ps[0], ps[1:]...)
	args := in(h.srcNS, append([]string{"criu", "dump", "-t", strconv.Itoa(cmd.Process.Pid), "-D", srcDir, "-o", "dump.log",
		"--page-server", "--address", addr, "--port", port}, h.tlsArgs("src")...)...)
	if h.hold {
		args = append(args, "--leave-stopped")
	}
	var ph handPhases
	start := time.Now()
	run(args[0], args[1:]...)
	waitGone(strings.TrimSpace(readFile(psPid)))
	ph.dump = time.Since(start)
	imgs, err := filepath.Glob(filepath.Join(srcDir, "*.img"))
	check(err)
	run("cp", append(imgs, dstDir)...)
	ph.copy = time.Since(start) - ph.dump
	pidfile := filepath.Join(work, fmt.Sprintf("hand-%d.pid", i))
	restore := in(h.dstNS, "criu", "restore", "-D", dstDir, "-o", "restore.log", "-d", "--pidfile", pidfile)
	run(restore[0], restore[1:]...)
	ph.down = time.Since(start)
	ph.restore = ph.down - ph.dump - ph.copy
	if h.hold {
		check(syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(pidfile)))
	check(err)
	check(syscall.Kill(pid, syscall.SIGKILL))
	return ph
}

// waitGone waits until pid has exited (a zombie counts: pid 1 reaps late).
func waitGone(pid string) {
	for range 3000 {
		st := readFile("/proc/" + pid + "/stat")
		if st == "" || strings.Contains(st, ") Z ") {
			return
		}
		time.Sleep(time.Millisecond)
	}
	check(fmt.Errorf("page server %s did not exit", pid))
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// ckptctlMigrate moves a fresh memload from src to dst with ckptctl and
// returns the command's wall time and the downtime it reports.
func ckptctlMigrate(src, dst *daemon, memload, peer, prefix string, i int) (total, down sample) {
	name := fmt.Sprintf("%s%d", prefix, i)
	src.ctl("run", "--name", name, "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib))
	waitReady(filepath.Join(src.root, "workloads", name, "output.log"))
	start := time.Now()
	out := src.ctl("migrate", "-o", "json", name, "--to", peer, "--precopy=off")
	total = sample{wall: time.Since(start)}
	r := parseMigrated(out)
	for _, p := range r.Phases {
		if prefix == "mig" {
			ctlPhases[p.Name] = append(ctlPhases[p.Name], sample{wall: time.Duration(p.NS)})
		}
	}
	dst.ctl("kill", name)
	dst.ctl("rm", r.Checkpoint)
	return total, sample{wall: time.Duration(r.DowntimeNS)}
}

// migrated is what ckptctl migrate -o json reports.
type migrated struct {
	DowntimeNS int64  `json:"downtime_ns,string"`
	Bytes      int64  `json:"bytes,string"`
	Checkpoint string `json:"checkpoint"`
	Phases     []struct {
		Name string `json:"name"`
		NS   int64  `json:"duration_ns,string"`
	} `json:"phases"`
}

func parseMigrated(out string) migrated {
	var r migrated
	check(json.Unmarshal([]byte(out), &r))
	return r
}
