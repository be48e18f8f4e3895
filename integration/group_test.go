package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/freezer"
	"github.com/ckptd/ckptd/test/nettest"
)

// nums are the numbers of the lines of log that start with word, in order.
func nums(log, word string) []int {
	var out []int
	for _, m := range regexp.MustCompile(`(?m)^`+word+` (\d+)$`).FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

func lastNum(log, word string) int {
	ns := nums(log, word)
	if len(ns) == 0 {
		return 0
	}
	return ns[len(ns)-1]
}

// thawOnFailure lets go of what a failing test leaves frozen: frozen
// tasks take no SIGKILL, and the harness ends every process.
func thawOnFailure(t *testing.T, d *daemon) {
	t.Cleanup(func() {
		if h, err := freezer.Open(freezer.NameFor(d.root)); err == nil {
			h.Sweep(context.Background())
		}
	})
}

// frozenLeft lists the freezer cgroups d's ckptd has (it has none between
// group checkpoints).
func frozenLeft(d *daemon) []string {
	var left []string
	filepath.WalkDir(filepath.Join("/sys/fs/cgroup/freezer", freezer.NameFor(d.root)), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// startTalkingPair runs a consumer and a producer joined by TCP, each in
// its own network, until 20 messages went through; got reads the
// consumer's count.
func startTalkingPair(t *testing.T, d *daemon) (got func() int) {
	t.Helper()
	d.must("run", "--name", "consumer", "--", bins.tcpload, "--consume", "0.0.0.0:9000")
	logs := func(name string) string { return d.must("logs", name) }
	waitFor(t, "the consumer to listen", func() bool { return strings.Contains(logs("consumer"), "listening") })
	d.must("run", "--name", "producer", "--", bins.tcpload, "--produce", d.workload("consumer").IP+":9000")
	got = func() int { return lastNum(logs("consumer"), "got") }
	waitFor(t, "messages flowing", func() bool { return got() >= 20 })
	return got
}

// pairInStep fails t unless the pair's logs since their restore show
// nothing lost or repeated and the consumer never ahead of the producer.
func pairInStep(t *testing.T, afterC, afterP string) {
	t.Helper()
	if strings.Contains(afterC, "ERROR") || strings.Contains(afterP, "closed") {
		t.Fatalf("the restored pair lost or repeated messages:\nconsumer: %s\nproducer: %s", tail(afterC, 5), tail(afterP, 5))
	}
	gotFirst, sentFirst := nums(afterC, "got"), nums(afterP, "sent")
	if len(gotFirst) == 0 || len(sentFirst) == 0 || gotFirst[0] > sentFirst[0] {
		t.Fatalf("after the restore the consumer is ahead of the producer: got %v..., sent %v...", gotFirst[:min(3, len(gotFirst))], sentFirst[:min(3, len(sentFirst))])
	}
}

// TestGroupProducerConsumer: a producer and a consumer, two workloads in
// their own networks joined by a TCP connection, checkpointed as a group:
// running on, and stopped then restored, where the consumer takes up
// exactly where the producer is (never ahead, nothing lost or repeated),
// then restored again as copies beside the originals.
func TestGroupProducerConsumer(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	thawOnFailure(t, d)
	logs := func(name string) string { return d.must("logs", name) }
	got := startTalkingPair(t, d)

	out := d.must("create", "--group", "pc1", "--leave-running", "--tcp-established", "producer", "consumer")
	if !strings.Contains(out, "group pc1") {
		t.Fatalf("create --group said %q", out)
	}
	before := got()
	waitFor(t, "messages after a group checkpoint that left both running", func() bool { return got() >= before+20 })
	if ls := d.must("ls"); !regexp.MustCompile(`(?m)^pc1 .*producer-1 \(producer\), consumer-1 \(consumer\)`).MatchString(ls) {
		t.Fatalf("ls does not show the group with its members:\n%s", ls)
	}
	if in := d.must("inspect", "pc1"); !strings.Contains(in, "producer-1") || !strings.Contains(in, "consumer-1") {
		t.Fatalf("inspect pc1:\n%s", in)
	}

	d.must("create", "--group", "pc2", "--tcp-established", "producer", "consumer")
	waitFor(t, "both stopped by the group checkpoint", func() bool {
		return !d.workload("producer").Running && !d.workload("consumer").Running
	})
	if left := frozenLeft(d); len(left) != 0 {
		t.Fatalf("freezer cgroups left after the group checkpoint: %v", left)
	}
	seen := len(logs("consumer"))
	sentBefore := len(logs("producer"))
	d.must("restore", "pc2")
	waitFor(t, "the conversation to go on after the group's restore", func() bool { return got() >= before+100 })
	pairInStep(t, logs("consumer")[seen:], logs("producer")[sentBefore:])

	out, warned, err := d.ctl("restore", "pc2", "--name", "copy")
	if err != nil {
		t.Fatalf("restore pc2 --name copy: %v: %s", err, warned)
	}
	if !strings.Contains(out, "producer-copy restored") {
		t.Fatalf("restore --name copy:\n%s", out)
	}
	if c := d.workload("consumer-copy"); !c.Running || c.IP == "" || c.IP == d.workload("consumer").IP {
		t.Fatalf("consumer-copy: running %v at %q, beside its original at %q:\n%s", c.Running, c.IP, d.workload("consumer").IP, out)
	}
	// Its connection restored closed (its peer's address is new), the
	// copy of the consumer keeps its count and waits for a producer.
	waitFor(t, "the consumer's copy to see its connection closed", func() bool {
		return regexp.MustCompile(`closed at \d+`).MatchString(logs("consumer-copy"))
	})
	if !strings.Contains(warned, "restored closed") {
		t.Errorf("restore --name did not warn that the copies' connections were closed:\n%s", warned)
	}
	if strings.Contains(logs("producer"), "closed") || strings.Contains(logs("consumer"), "ERROR") {
		t.Fatalf("the originals were disturbed by their copies")
	}
	for _, name := range []string{"producer", "consumer", "producer-copy", "consumer-copy"} {
		d.must("kill", name)
	}
	d.must("rm", "pc1")
	if ls := d.must("ls"); strings.Contains(ls, "pc1") || strings.Contains(ls, "producer-1 ") {
		t.Fatalf("rm pc1 left the group or its members:\n%s", ls)
	}
	d.mustFail("member of a group", "rm", "consumer-2")
}

// listing is ls -a -o json: checkpoints and groups.
type listing struct {
	Checkpoints []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Group string `json:"group"`
	} `json:"checkpoints"`
	Groups []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Members []struct {
			Checkpoint string `json:"checkpoint"`
		} `json:"members"`
	} `json:"groups"`
}

// TestGroupKilledCampaign kills ckptd at random moments of group
// checkpoints, 50 times, and restarts it: only complete groups are left,
// no member stays frozen, and every member runs on undisturbed.
func TestGroupKilledCampaign(t *testing.T) {
	d := startDaemon(t)
	thawOnFailure(t, d)
	a, b := d.runLoad("ga", 16), d.runLoad("gb", 16)
	complete := 0
	for round := range 50 {
		beforeA := loadStatus(t, a.Ref.PID, a.Ref.LogPath)
		beforeB := loadStatus(t, b.Ref.PID, b.Ref.LogPath)
		wait := d.startCtl("create", "--group", fmt.Sprintf("g%d", round), "--leave-running", "ga", "gb")
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		d.kill9()
		wait()
		d.start()
		d.criuGone(t)
		if left := frozenLeft(d); len(left) != 0 {
			t.Fatalf("round %d: freezer cgroups left after start-up: %v", round, left)
		}
		for _, w := range []target{a, b} {
			waitFor(t, "member running, not traced", func() bool { return alive(w.Ref.PID) && !traced(w.Ref.PID) })
		}
		continues(t, beforeA, loadStatus(t, a.Ref.PID, a.Ref.LogPath))
		continues(t, beforeB, loadStatus(t, b.Ref.PID, b.Ref.LogPath))
		var l listing
		if err := json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l); err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, c := range l.Checkpoints {
			listed[c.ID] = true
		}
		groups := map[string]bool{}
		for _, g := range l.Groups {
			groups[g.ID] = true
			if len(g.Members) != 2 || !listed[g.Members[0].Checkpoint] || !listed[g.Members[1].Checkpoint] {
				t.Fatalf("round %d: group %s is listed without its two members: %+v", round, g.Name, g.Members)
			}
		}
		for _, c := range l.Checkpoints {
			if c.Group != "" && !groups[c.Group] {
				t.Fatalf("round %d: checkpoint %s of an incomplete group is listed", round, c.Name)
			}
		}
		if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
			t.Fatalf("round %d: staging not empty after start-up: %v", round, left)
		}
		complete = len(l.Groups)
	}
	t.Logf("%d of 50 group checkpoints completed before their kill", complete)
	if complete == 0 || complete == 50 {
		t.Fatalf("%d of 50 groups completed: the kills did not land both before and after the commit", complete)
	}
	// A group that completed restores, as copies beside the originals.
	var l listing
	json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l)
	out := d.must("restore", l.Groups[len(l.Groups)-1].Name, "--name", "check")
	if !strings.Contains(out, "ga-check") || !strings.Contains(out, "gb-check") {
		t.Fatalf("restore of a complete group:\n%s", out)
	}
	d.must("kill", "ga-check")
	d.must("kill", "gb-check")
}

// tracedTree is a workload CRIU cannot dump: its child is traced by its
// parent, and CRIU seizes no task another tracer holds.
const tracedTree = `import ctypes, os, time
pid = os.fork()
if pid == 0:
    time.sleep(3600)
ctypes.CDLL(None, use_errno=True).ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
print("tracing", pid, flush=True)
time.sleep(3600)`

// TestGroupFailures: a member that cannot be dumped fails the group, and
// the others run on, unfrozen, with no group or member checkpoint left;
// a group restore whose second member fails ends the first.
func TestGroupFailures(t *testing.T) {
	d := startDaemon(t)
	thawOnFailure(t, d)
	ok := d.runLoad("ok", 8)
	d.must("run", "--name", "bad", "--", "python3", "-c", tracedTree)
	waitFor(t, "the tracer", func() bool { return strings.Contains(d.must("logs", "bad"), "tracing") })
	for _, mode := range [][]string{{"--leave-running"}, nil} {
		before := loadStatus(t, ok.Ref.PID, ok.Ref.LogPath)
		d.mustFail("checkpoint bad", append([]string{"create", "--group", "gbad", "ok", "bad"}, mode...)...)
		continues(t, before, loadStatus(t, ok.Ref.PID, ok.Ref.LogPath))
		if cs := d.checkpoints(); len(cs) != 0 {
			t.Fatalf("a failed group left checkpoints: %+v", cs)
		}
		if left := frozenLeft(d); len(left) != 0 {
			t.Fatalf("a failed group left freezer cgroups: %v", left)
		}
	}
	d.mustFail("not found", "create", "--group", "gnone", "ok", "nosuch")
	d.mustFail("named twice", "create", "--group", "gtwice", "ok", "ok")

	// Restore: the second member's name is taken by a running workload.
	d.runLoad("other", 8)
	d.must("create", "--group", "g", "ok", "other")
	d.runLoad("other", 8) // a new workload under the member's name
	d.mustFail("restore group g", "restore", "g")
	waitFor(t, "the restored first member ended", func() bool { return !d.workload("ok").Running })
	if out := d.must("ls"); !strings.Contains(out, "ok-1") {
		t.Fatalf("the group's checkpoints went with its failed restore:\n%s", out)
	}
	d.must("kill", "other")
	d.must("kill", "bad")
}

// TestGroupSchedule: a group's schedule takes group checkpoints of its
// members while they run, and its retention removes whole groups.
func TestGroupSchedule(t *testing.T) {
	d := startDaemon(t)
	thawOnFailure(t, d)
	a := d.runLoad("sa", 8)
	d.runLoad("sb", 8)
	before := loadStatus(t, a.Ref.PID, a.Ref.LogPath)
	d.must("schedule", "--group", "nightly", "--every", "1s", "--keep-last", "2", "sa", "sb")
	var l listing
	waitFor(t, "a group's schedule to run and prune", func() bool {
		json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l)
		if len(l.Groups) != 2 {
			return false
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(l.Groups[1].Name, "nightly-"))
		return n >= 4
	})
	d.must("schedule", "rm", "nightly")
	json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l)
	members := 0
	for _, g := range l.Groups {
		if !strings.HasPrefix(g.Name, "nightly-") || len(g.Members) != 2 {
			t.Fatalf("group %s: %+v", g.Name, g.Members)
		}
		members += len(g.Members)
	}
	if len(l.Checkpoints) != members {
		t.Fatalf("%d checkpoints listed for %d members of the groups kept: the pruned groups' members stayed", len(l.Checkpoints), members)
	}
	continues(t, before, loadStatus(t, a.Ref.PID, a.Ref.LogPath))
	if b := d.workload("sb"); !b.Running {
		t.Fatalf("sb stopped under its schedule")
	}
}

// TestGroupAcrossHosts: a group with a member on each of two hosts, the
// coordinator on one: it completes on both, each host's record listing
// both members, and both members run on. Then the participant is cut off
// (nft drops its every packet) while it is frozen: the group fails on the
// coordinator within the peer timeout, its member runs on; the
// participant, hearing nothing, rolls back on its own: its member runs,
// nothing is frozen, no group is kept on either host.
func TestGroupAcrossHosts(t *testing.T) {
	a, b := twoHosts(t)
	idle := "--peer-timeout=" + partitionIdle.String()
	coord, part := a.ckptd("", "", idle), b.ckptd("", "", idle)
	thawOnFailure(t, coord)
	thawOnFailure(t, part)
	wa := coord.runLoadIn(t.TempDir(), "wa", 16)
	wb := part.runLoadIn(t.TempDir(), "wb", 16)
	beforeA := loadStatus(t, wa.Ref.PID, wa.Ref.LogPath)
	beforeB := loadStatus(t, wb.Ref.PID, wb.Ref.LogPath)
	out := coord.must("create", "--group", "both", "--leave-running", "wa", b.addr()+":wb")
	if !strings.Contains(out, b.addr()+":wb") {
		t.Fatalf("create --group across hosts:\n%s", out)
	}
	for _, d := range []*daemon{coord, part} {
		var l listing
		json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l)
		if len(l.Groups) != 1 || len(l.Groups[0].Members) != 2 || len(l.Checkpoints) != 1 {
			t.Fatalf("a host's record of the group across hosts: %+v, checkpoints %+v", l.Groups, l.Checkpoints)
		}
	}
	continues(t, beforeA, loadStatus(t, wa.Ref.PID, wa.Ref.LogPath))
	continues(t, beforeB, loadStatus(t, wb.Ref.PID, wb.Ref.LogPath))

	mark := filepath.Join(t.TempDir(), "paused")
	part.stop()
	part.env = []string{"CKPTD_FAILPOINT_PAUSE_BEFORE=group-frozen", "CKPTD_FAILPOINT_PAUSE_MARK=" + mark}
	part.start()
	wb = part.workload("wb")
	wait := coord.startCtl("create", "--group", "cut", "wa", b.addr()+":wb")
	waitFor(t, "the participant frozen, before it says so", func() bool { _, err := os.Stat(mark); return err == nil })
	heal := partition(t, b)
	cut := time.Now()
	os.Remove(mark)
	stderr, err := wait()
	took := time.Since(cut)
	t.Logf("partition with the participant frozen: create failed after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if err == nil {
		t.Fatal("the group completed with its participant cut off")
	}
	if took > partitionIdle+5*time.Second {
		t.Errorf("the coordinator took %s to give up, peer_timeout is %s", took, partitionIdle)
	}
	if !coord.workload("wa").Running {
		t.Fatal("the coordinator's member did not run on")
	}
	waitFor(t, "the participant to roll back on its own", func() bool { return len(frozenLeft(part)) == 0 })
	heal()
	for _, d := range []*daemon{coord, part} {
		var l listing
		json.Unmarshal([]byte(d.must("ls", "-a", "-o", "json")), &l)
		if len(l.Groups) != 1 || len(l.Checkpoints) != 1 {
			t.Fatalf("after the cut group: groups %+v, checkpoints %+v", l.Groups, l.Checkpoints)
		}
	}
	before := loadStatus(t, wb.Ref.PID, wb.Ref.LogPath)
	time.Sleep(200 * time.Millisecond)
	continues(t, before, loadStatus(t, wb.Ref.PID, wb.Ref.LogPath))

	// Over the healed link, a group that stops both; each host restores
	// its own member.
	coord.must("create", "--group", "stopped", "wa", b.addr()+":wb")
	waitFor(t, "both members stopped", func() bool { return !coord.workload("wa").Running && !part.workload("wb").Running })
	_, warned, err := coord.ctl("restore", "stopped")
	if err != nil || !strings.Contains(warned, b.addr()) {
		t.Fatalf("restore on the coordinator: %v: %s", err, warned)
	}
	part.must("restore", "stopped")
	for _, x := range []target{coord.workload("wa"), part.workload("wb")} {
		if !x.Running {
			t.Fatalf("%s did not come back: %+v", x.Ref.Name, x)
		}
	}
	coord.must("kill", "wa")
	part.must("kill", "wb")
}
