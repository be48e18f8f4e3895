package integration

import (
	"bufio"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/test/nettest"
)

var okRE = regexp.MustCompile(`ok (\d+)`)

// lastOK is the highest sequence number the tcpload client confirmed.
func lastOK(log string) int {
	n := 0
	for _, m := range okRE.FindAllStringSubmatch(log, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n {
			n = v
		}
	}
	return n
}

// TestTCPServer: a workload that serves TCP (a listening socket and an
// established loopback connection between two of its processes) is
// checkpointed with --tcp-established and restored; the conversation goes
// on with no lost, repeated or reordered message. A --leave-running
// snapshot of it works too.
func TestTCPServer(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "--name", "srv", "--", bins.tcpload)
	logs := func() string { return d.must("logs", "srv") }
	waitFor(t, "conversation under way", func() bool { return lastOK(logs()) >= 5 })

	d.mustFail("tcp-established", "create", "srv", "--leave-running")
	d.must("create", "srv", "--tcp-established", "--leave-running", "--name", "snap")
	waitFor(t, "conversation after the snapshot", func() bool { return lastOK(logs()) >= 10 })

	d.must("create", "srv", "--tcp-established", "--name", "stopped")
	before := lastOK(logs())
	d.must("restore", "stopped")
	waitFor(t, "conversation after the restore", func() bool { return lastOK(logs()) >= before+10 })
	if l := logs(); strings.Contains(l, "ERROR") {
		t.Fatalf("conversation broke:\n%s", tail(l, 10))
	}
	t.Logf("conversation went on from %d to %d across the restore", before, lastOK(logs()))
}

// TestMigrateTCPServer moves the TCP workload between two network-namespace
// hosts with --tcp-established: its loopback conversation goes on there.
func TestMigrateTCPServer(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	src.must("run", "--name", "srv", "--", bins.tcpload)
	waitFor(t, "conversation under way", func() bool { return lastOK(src.must("logs", "srv")) >= 5 })
	src.migrate("srv", "--to", b.addr(), "--tcp-established")
	before := lastOK(src.must("logs", "srv"))
	logs := func() string { return dst.must("logs", "srv") }
	waitFor(t, "conversation on the destination", func() bool { return lastOK(logs()) >= before+10 })
	if l := src.must("logs", "srv") + logs(); strings.Contains(l, "ERROR") {
		t.Fatalf("conversation broke:\n%s", tail(l, 10))
	}
	t.Logf("conversation went on from %d to %d on the destination", before, lastOK(logs()))
}

// echoServer is a workload that serves line echo on a loopback port it
// prints, one connection at a time, and says when a connection closes.
const echoServer = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen()
print("listening", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    for line in c.makefile("rb"):
        c.sendall(line)
    print("closed", flush=True)
    c.close()
`

// TestRestoreTCPClose: a server checkpointed with a connection from a
// client outside its tree, in the host's network and in its own. With
// --tcp-close the restore holds that connection closed, as for a client
// that is gone: the server sees it end at once and serves the next
// client. (TestContainerBadInput: containers refuse the flag.)
func TestRestoreTCPClose(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	// CRIU's rules holding a connection (mark 0xc114) must not outlive it.
	lockRules := func() int {
		out, err := exec.Command("iptables-save", "-t", "filter").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(out), "0xc114")
	}
	locks := lockRules()
	defer func() {
		if n := lockRules(); n != locks {
			t.Errorf("CRIU's connection rules: %d before, %d after", locks, n)
		}
	}()
	for _, net := range []string{"host", "private"} {
		name := "echo-" + net
		bind := map[string]string{"host": "127.0.0.1", "private": "0.0.0.0"}[net]
		d.must("run", "--name", name, "--net", net, "--", "python3", "-c", echoServer, bind)
		var port string
		waitFor(t, "the server to listen", func() bool {
			m := regexp.MustCompile(`listening (\d+)`).FindStringSubmatch(d.must("logs", name))
			if m != nil {
				port = m[1]
			}
			return m != nil
		})
		addr := "127.0.0.1:" + port
		if net == "private" {
			addr = d.workload(name).IP + ":" + port
		}
		conn := echo(t, addr, "before")
		defer conn.Close()
		d.must("create", name, "--tcp-established", "--name", name+"-with-client")

		// The client is still there (without --tcp-close the conversation
		// would go on), yet the restored server holds the connection closed.
		d.must("restore", name+"-with-client", "--tcp-close")
		waitFor(t, net+": the restored server to see its connection closed", func() bool {
			return strings.Contains(d.must("logs", name), "closed")
		})
		conn.SetDeadline(time.Now().Add(3 * time.Second)) // an open one echoes at once
		conn.Write([]byte("lost\n"))
		if got, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			t.Fatalf("%s: the closed connection still echoes: %q", net, got)
		}
		echo(t, addr, "after").Close()
		d.must("kill", name)
	}
}

// echo connects to the echo server at addr, checks one line comes back,
// and returns the connection.
func echo(t *testing.T, addr, line string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
	return conn
}
