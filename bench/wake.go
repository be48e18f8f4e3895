package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ckptd/ckptd/test/nettest"
)

var (
	wakeOn = flag.Bool("wake", true, "benchmark scale to zero: first-byte latency of a request to a hibernated nginx and python http.server against the same request to the running server, and the cost of a private network at restore")
	nwake  = flag.Int("wake-rounds", 20, "wakes per server")
)

// wakeApps are servers in their own network: they listen on every address
// of their namespace, on port 8080.
var wakeApps = []app{
	{"nginx", func(work, _ string) []string {
		conf := filepath.Join(work, "nginx-wake.conf")
		check(os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %[1]s/nginx-wake.pid;
error_log stderr;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %[1]s; server { listen 8080; root %[1]s; } }
`, work)), 0o600))
		check(os.WriteFile(filepath.Join(work, "index.html"), []byte("hello\n"), 0o644))
		return []string{"/usr/sbin/nginx", "-c", conf, "-p", work}
	}},
	{"python http.server", func(work, _ string) []string {
		return []string{"/usr/bin/python3", "-m", "http.server", "8080", "--directory", work}
	}},
}

// benchWake measures, for each server, the first byte of an HTTP request
// to it running and to it hibernated (the request wakes it), in turns.
func benchWake(work string) {
	defer keepHostNetwork()()
	d := startDaemon(work, "wake", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	fmt.Printf("\nscale to zero: connect to first response byte, %d requests each, interleaved (running, hibernated, ...)\n\n", *nwake)
	fmt.Printf("%-20s %24s %24s %8s\n", "first byte (ms)", "running min/med/max", "hibernated min/med/max", "ratio")
	for i, a := range wakeApps {
		dir := filepath.Join(work, "wake-"+strconv.Itoa(i))
		check(os.MkdirAll(dir, 0o700))
		port := freePort()
		name := "wake-" + port
		d.ctl(append([]string{"run", "--name", name, "--net", "private", "-p", port + ":8080", "--idle-after", "0", "--"}, a.argv(dir, "")...)...)
		waitListening(port)
		firstByte(port) // warm: the page cache, the server's own first request
		var up, woken []sample
		for range *nwake {
			up = append(up, sample{wall: firstByte(port)})
			d.ctl("hibernate", name)
			woken = append(woken, sample{wall: firstByte(port)})
		}
		d.ctl("kill", name)
		os.RemoveAll(dir)
		wall := func(s sample) time.Duration { return s.wall }
		_, upMid, _ := spread(up, wall)
		_, wokeMid, _ := spread(woken, wall)
		fmt.Printf("%-20s %24s %24s %8s\n", a.name, mmmWall(up), mmmWall(woken), ratio(wokeMid, upMid))
	}
	fmt.Println("(goal: nginx's first byte after a wake within 100 ms median; zeropod publishes about 171 ms per nginx restore)")
	benchNetSetup(work, d)
}

// keepHostNetwork snapshots what the CNI plugins leave on the host once
// (ckptd's bridge, the port-mapping chains); the function it returns, also
// run if the benchmark fails, puts the host back as it was.
func keepHostNetwork() (undo func()) {
	restore, err := nettest.Snapshot("ckptd0")
	check(err)
	undo = func() {
		if err := restore(); err != nil {
			log.Printf("put the host's network back: %v", err)
		}
	}
	atFatal(undo)
	return undo
}

// firstByte is the time from connecting to 127.0.0.1:port to the first
// byte of the answer to an HTTP GET.
func firstByte(port string) time.Duration {
	start := time.Now()
	check(get(port))
	return time.Since(start)
}

// get sends an HTTP GET to 127.0.0.1:port and reads the answer's first
// byte.
func get(port string) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: bench\r\n\r\n")); err != nil {
		return err
	}
	b := make([]byte, 1)
	if n, err := c.Read(b); n == 0 {
		return errors.Join(errors.New("no answer"), err)
	}
	return nil
}

func mmmWall(s []sample) string {
	lo, mid, hi := spread(s, func(s sample) time.Duration { return s.wall })
	return fmt.Sprintf("%.1f/%.1f/%.1f", ms(lo), ms(mid), ms(hi))
}

// benchNetSetup restores copies of a small workload checkpointed in the
// host's network and in its own, in turns: the cost of making and wiring
// a namespace (CNI's bridge, host-local and portmap) at each restore.
func benchNetSetup(work string, d *daemon) {
	var host, private []sample
	names := map[string]string{}
	for _, net := range []string{"host", "private"} {
		name := "netcost-" + net
		args := []string{"run", "--name", name, "--net", net}
		if net == "private" {
			args = append(args, "-p", freePort()+":8080")
		}
		d.ctl(append(args, "--", "sleep", "1000000")...)
		names[net] = createJSON(d, "--leave-running", name).Name
		d.ctl("kill", name)
	}
	for i := -1; i < *nwake; i++ { // round -1 warms up
		for _, net := range []string{"host", "private"} {
			copyName := fmt.Sprintf("netcost-copy-%s-%d", net, i)
			start := time.Now()
			d.ctl("restore", names[net], "--name", copyName)
			took := time.Since(start)
			d.ctl("kill", copyName)
			if i < 0 {
				continue
			}
			if net == "host" {
				host = append(host, sample{wall: took})
			} else {
				private = append(private, sample{wall: took})
			}
		}
	}
	wall := func(s sample) time.Duration { return s.wall }
	_, hostMid, _ := spread(host, wall)
	_, privMid, _ := spread(private, wall)
	fmt.Printf("\n%-20s %24s %24s %8s\n", "restore (ms)", "--net host min/med/max", "--net private min/med/max", "ratio")
	fmt.Printf("%-20s %24s %24s %8s\n", "sleep, copy", mmmWall(host), mmmWall(private), ratio(privMid, hostMid))
	fmt.Printf("(the private network's cost at restore: %.1f ms median)\n", ms(privMid-hostMid))
}
