package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The shaped link: two network namespaces joined by a veth whose ends
// are shaped with tc to linkRate, the workload rewriting churnPercent of
// its memory every second, as issue "Migration across a real network"
// measures it.
const (
	linkRate     = "1gbit"
	churnPercent = 2
	linkPort     = "7070"
)

// link is the two namespaces and their addresses.
type link struct{ src, dst, srcIP, dstIP string }

func newLink() *link {
	tag := strconv.Itoa(os.Getpid() % 100000)
	l := &link{src: "ckb-src" + tag, dst: "ckb-dst" + tag, srcIP: "10.233.0.1", dstIP: "10.233.0.2"}
	va, vb := "ckbva"+tag, "ckbvb"+tag
	for _, ns := range []string{l.src, l.dst} {
		run("ip", "netns", "add", ns)
	}
	run("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
	for _, x := range []struct{ ns, dev, ip string }{{l.src, va, l.srcIP}, {l.dst, vb, l.dstIP}} {
		run("ip", "link", "set", x.dev, "netns", x.ns)
		run("ip", "-n", x.ns, "addr", "add", x.ip+"/24", "dev", x.dev)
		run("ip", "-n", x.ns, "link", "set", x.dev, "up")
		run("ip", "-n", x.ns, "link", "set", "lo", "up")
		run("ip", "netns", "exec", x.ns, "tc", "qdisc", "add", "dev", x.dev, "root", "tbf", "rate", linkRate, "burst", "512kb", "latency", "50ms")
	}
	return l
}

// close removes the namespaces, and with them the veth and its shaping.
func (l *link) close() {
	for _, ns := range []string{l.src, l.dst} {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

func benchLink(work string) {
	memload := buildMemload(work)
	l := newLink()
	defer l.close()
	pki := filepath.Join(work, "link-pki")
	ctl := filepath.Join(*binDir, "ckptctl")
	run(ctl, "certs", "ca", filepath.Join(pki, "ca"))
	run(ctl, "certs", "host", "src", "--ca", filepath.Join(pki, "ca"), "--out", filepath.Join(pki, "src"), "--ip", l.srcIP)
	run(ctl, "certs", "host", "dst", "--ca", filepath.Join(pki, "ca"), "--out", filepath.Join(pki, "dst"), "--ip", l.dstIP)
	none := filepath.Join(work, "no-containerd.sock")
	src := startDaemonIn(l.src, work, "lsrc", none, "--peer-certs", filepath.Join(pki, "src"))
	defer src.stop()
	dst := startDaemonIn(l.dst, work, "ldst", none, "--peer-certs", filepath.Join(pki, "dst"), "--peer-listen", l.dstIP+":"+linkPort)
	defer dst.stop()
	modes := []*linkMode{{name: "ckptctl migrate, stop-and-copy", arg: "--precopy=off"}, {name: "ckptctl migrate --precopy", arg: "--precopy"},
		{name: "ckptctl migrate --lazy", arg: "--lazy"}}
	hand := &handVariant{name: "hand criu, source held", hold: true, srcNS: l.src, dstNS: l.dst, addr: l.dstIP, churn: true}
	// One untimed round of each warms the page cache; then they take turns.
	for i := -1; i < *rounds; i++ {
		for _, m := range modes {
			m.round(src, dst, memload, l.dstIP+":"+linkPort, i)
		}
		ph := rawMigrateRound(work, memload, 2*warmUp+i+1, hand)
		if i >= 0 {
			hand.phases = append(hand.phases, ph)
		}
	}
	fmt.Printf("\nmigration over a veth shaped to %s: memload %d MiB rewriting %d %% a second, %d rounds, interleaved\n\n", linkRate, *mib, churnPercent, *rounds)
	base := modes[0].down
	fmt.Printf("%-34s %24s %8s %24s %10s\n", "downtime, frozen to running (s)", "min/med/max", "ratio", "total (s)", "MiB sent")
	fmt.Printf("%-34s %24s %8s %24s %10s\n", hand.name, mmm(hand.downs(), wallOf), ratio(median(hand.downs()), median(base)), "-", "-")
	for _, m := range modes {
		fmt.Printf("%-34s %24s %8s %24s %10d\n", m.name, mmm(m.down, wallOf), ratio(median(m.down), median(base)), mmm(m.total, wallOf), m.bytes/int64(len(m.down))>>20)
	}
	fmt.Println("(ratio: median over stop-and-copy's; MiB sent: mean per migration; the hand pipeline's pages cross the link, its other images are copied on disk;")
	fmt.Println(" total: until the source is gone, for --lazy once every page has moved)")
	for _, m := range modes {
		fmt.Printf("downtime phases, median (s), %s:", m.name)
		for _, name := range []string{"dump", "files", "restore", "release"} {
			if ps := m.phases[name]; len(ps) > 0 {
				fmt.Printf(" %s %.3f", name, median(ps).Seconds())
			}
		}
		fmt.Println()
	}
}

// linkMode is one way ckptctl migrates, and what it measured.
type linkMode struct {
	name, arg   string
	down, total []sample
	bytes       int64
	phases      map[string][]sample
}

func (m *linkMode) round(src, dst *daemon, memload, peer string, i int) {
	name := fmt.Sprintf("lnk%d-%s", i+1, strings.NewReplacer("-", "", "=", "").Replace(m.arg))
	src.ctl("run", "--name", name, "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib), "--churn", strconv.Itoa(churnPercent))
	waitReady(filepath.Join(src.root, "workloads", name, "output.log"))
	pid, _ := workloadPID(src, name)
	stop := churn(pid)
	time.Sleep(time.Second)
	start := time.Now()
	out := src.ctl("migrate", "-o", "json", name, "--to", peer, m.arg)
	total := time.Since(start)
	stop()
	r := parseMigrated(out)
	dst.ctl("kill", name)
	if r.Checkpoint != "" { // post-copy keeps none
		dst.ctl("rm", r.Checkpoint)
	}
	if i < 0 {
		return
	}
	m.down, m.total = append(m.down, sample{wall: time.Duration(r.DowntimeNS)}), append(m.total, sample{wall: total})
	m.bytes += r.Bytes
	if m.phases == nil {
		m.phases = map[string][]sample{}
	}
	for _, p := range r.Phases {
		m.phases[p.Name] = append(m.phases[p.Name], sample{wall: time.Duration(p.NS)})
	}
}

// churn makes the memload with host PID pid rewrite churnPercent of its
// memory every second, until stop.
func churn(pid int) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if syscall.Kill(pid, syscall.SIGUSR2) != nil {
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// startDaemonIn is startDaemon inside network namespace ns.
func startDaemonIn(ns, work, name, containerd string, extra ...string) *daemon {
	return startDaemonWrapped(in(ns), work, name, containerd, extra...)
}
