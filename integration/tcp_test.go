package integration

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
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
