package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// app is a real application from Debian's packages, listening on a
// loopback port.
type app struct {
	name string
	argv func(work, port string) []string
}

var apps = []app{
	{"redis", func(work, port string) []string {
		return []string{"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work}
	}},
	{"nginx", func(work, port string) []string {
		// Workers as root: CRIU cannot dump a tree of two users here
		// (root lacks CAP_SYS_RESOURCE).
		conf := filepath.Join(work, "nginx-"+port+".conf")
		check(os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %s/nginx-%s.pid;
error_log stderr;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %s;
	server { listen 127.0.0.1:%s; root %s; }
}
`, work, port, work, port, work)), 0o600))
		return []string{"/usr/sbin/nginx", "-c", conf, "-p", work}
	}},
	{"python http.server", func(work, port string) []string {
		return []string{"/usr/bin/python3", "-m", "http.server", port, "--bind", "127.0.0.1", "--directory", work}
	}},
}

// benchApps takes --leave-running checkpoints of small real applications
// through ckptd and with raw CRIU, in turns, and compares the time each
// was frozen: for a small application, ckptd's own work inside the freeze
// is what shows.
func benchApps(work string) {
	d := startDaemon(work, "apps", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	fmt.Printf("\nsmall applications, successive --leave-running checkpoints, %d rounds, interleaved\n\n", *nsnap)
	fmt.Printf("%-20s %24s %24s %8s\n", "frozen_time (ms)", "raw criu min/med/max", "ckptctl min/med/max", "ratio")
	for _, a := range apps {
		if _, err := os.Stat(a.argv(work, "1")[0]); err != nil {
			fmt.Printf("%-20s skipped: %v (make bench-deps installs it)\n", a.name, err)
			continue
		}
		raw, ctl := benchApp(work, d, a)
		froz := func(s sample) time.Duration { return s.frozen }
		_, rawMid, _ := spread(raw, froz)
		_, ctlMid, _ := spread(ctl, froz)
		fmt.Printf("%-20s %24s %24s %8s\n", a.name, mmmMs(raw), mmmMs(ctl), ratio(ctlMid, rawMid))
	}
	fmt.Println("(ratio: ckptctl's median over raw criu's; the goal is 1.10x or 3 ms, whichever is larger)")
}

func benchApp(work string, d *daemon, a app) (raw, ctl []sample) {
	dir := filepath.Join(work, "app-"+strconv.Itoa(os.Getpid()))
	check(os.MkdirAll(dir, 0o700))
	defer os.RemoveAll(dir)
	rawPort, ctlPort := freePort(), freePort()
	cmd := startRawApp(a.argv(dir, rawPort))
	defer func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) }()
	waitListening(rawPort)
	name := "app-" + rawPort
	d.ctl(append([]string{"run", "--name", name, "--net", "host", "--"}, a.argv(dir, ctlPort)...)...)
	defer d.ctl("kill", name)
	waitListening(ctlPort)
	for i := -1; i < *nsnap; i++ { // round -1 warms up
		imgs := filepath.Join(work, fmt.Sprintf("app-raw-%d", i))
		check(os.MkdirAll(imgs, 0o700))
		run("criu", "dump", "--leave-running", "-t", strconv.Itoa(cmd.Process.Pid), "-D", imgs, "-o", "dump.log", "-v4")
		r := sample{frozen: frozen(imgs)}
		os.RemoveAll(imgs)
		c := createJSON(d, "--leave-running", name)
		s := sample{frozen: time.Duration(c.Stats.FrozenTime) * time.Microsecond}
		d.ctl("rm", c.Name)
		if i >= 0 {
			raw, ctl = append(raw, r), append(ctl, s)
		}
	}
	return raw, ctl
}

// startRawApp starts argv as pid 1 of a new PID namespace and session, as
// ckptd runs a workload.
func startRawApp(argv []string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID}
	check(cmd.Start())
	go cmd.Wait()
	return cmd
}

func waitListening(port string) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			check(fmt.Errorf("nothing listens on 127.0.0.1:%s", port))
		}
	}
}

func mmmMs(s []sample) string {
	lo, mid, hi := spread(s, func(s sample) time.Duration { return s.frozen })
	return fmt.Sprintf("%.1f/%.1f/%.1f", ms(lo), ms(mid), ms(hi))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
