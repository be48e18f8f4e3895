package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// eventLog follows ckptctl events -o json for the rest of the test.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	Kind       string `json:"kind"`
	Op         string `json:"op"`
	Target     string `json:"target"`
	Checkpoint string `json:"checkpoint"`
	Error      string `json:"error"`
	Bytes      int64  `json:"bytes"` // a number, not protojson's string
}

func (d *daemon) followEvents(t *testing.T) *eventLog {
	t.Helper()
	ev := exec.Command(bins.ckptctl, "--socket", d.socket, "events", "-o", "json")
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Process.Kill(); ev.Wait() })
	l := &eventLog{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				l.mu.Lock()
				l.events = append(l.events, e)
				l.mu.Unlock()
			}
		}
	}()
	waitFor(t, "the events stream", func() bool { return len(l.of("subscribed", "")) > 0 })
	return l
}

// kinds is every event so far as KIND or KIND/OP, space-separated.
func (l *eventLog) kinds() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, strings.Trim(e.Kind+"/"+e.Op, "/"))
	}
	return strings.Join(out, " ")
}

// of returns the events of kind about target ("" for any).
func (l *eventLog) of(kind, target string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event
	for _, e := range l.events {
		if e.Kind == kind && (target == "" || e.Target == target) {
			out = append(out, e)
		}
	}
	return out
}

// TestInterruptedCreate: ctrl-c at any moment of a create finishes it or
// rolls it back whole; the client's departure changes nothing. One
// interrupt makes ckptctl say so and wait for the outcome; two make it
// stop waiting (exit 130). Before, a create interrupted after its commit
// was reported failed while its checkpoint was listed, its workload
// killed, and its statistics lost.
func TestInterruptedCreate(t *testing.T) {
	d := startDaemon(t)
	events := d.followEvents(t)
	for i, delay := range []time.Duration{20, 120, 180, 250, 350} {
		for _, twice := range []bool{false, true} {
			name := fmt.Sprintf("int%d-%v", i, twice)
			t.Run(name, func(t *testing.T) {
				d.t = t
				defer func() { d.t = t }()
				d.runLoad(name, 256)
				args := []string{"--socket", d.socket, "create", "-o", "json", name}
				if i == 0 {
					args = append(args, "--leave-running")
				}
				cmd := exec.Command(bins.ckptctl, args...)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(delay * time.Millisecond)
				cmd.Process.Signal(syscall.SIGINT)
				if twice {
					time.Sleep(20 * time.Millisecond)
					cmd.Process.Signal(syscall.SIGINT)
				}
				err := cmd.Wait()
				var exit *exec.ExitError
				if err != nil && !errors.As(err, &exit) {
					t.Fatal(err)
				}
				key := "workload/" + name
				waitFor(t, "the create's outcome", func() bool {
					return len(events.of("created", key))+len(events.of("failed", key)) > 0
				})
				checkInterruptedCreate(t, d, events, name, i == 0, twice, exit, stdout.String(), stderr.String())
			})
		}
	}
}

func checkInterruptedCreate(t *testing.T, d *daemon, events *eventLog, name string, leaveRunning, twice bool, exit *exec.ExitError, stdout, stderr string) {
	key := "workload/" + name
	created, failed := events.of("created", key), events.of("failed", key)
	var listed []checkpoint
	for _, c := range d.checkpoints() {
		if c.Target.Name == name {
			listed = append(listed, c)
		}
	}
	running := d.workload(name).Running
	brief := make([]string, len(listed))
	for i, c := range listed {
		brief[i] = fmt.Sprintf("%s %s frozen %dus", c.Name, c.State, c.Stats.FrozenTime)
	}
	switch {
	case len(created) == 1 && len(failed) == 0:
		if len(listed) != 1 || listed[0].State != "sealed" || listed[0].Stats.FrozenTime == 0 {
			t.Errorf("created, but listed %v; want one sealed checkpoint with statistics", brief)
		}
		if running != leaveRunning {
			t.Errorf("created; workload running %v, want %v", running, leaveRunning)
		}
		if !twice && (exit != nil || !strings.Contains(stdout, listed[0].ID)) {
			t.Errorf("interrupted once, ckptctl did not report the checkpoint: exit %v, stdout %q, stderr %q", exit, stdout, stderr)
		}
	case len(created) == 0 && len(failed) == 1:
		if len(listed) != 0 || !running {
			t.Errorf("failed (%s), but listed %v and workload running %v; want nothing listed, running", failed[0].Error, brief, running)
		}
	default:
		t.Errorf("events created %v, failed %v; want one of them", created, failed)
	}
	if exit != nil && strings.Contains(stderr, "interrupted") && !strings.Contains(stderr, "waiting for the outcome") {
		t.Errorf("ckptctl's interrupt message: %q", stderr)
	}
	if twice && exit != nil && exit.ExitCode() != 130 && !strings.Contains(stderr, "interrupted") {
		t.Errorf("interrupted twice: exit %d, stderr %q", exit.ExitCode(), stderr)
	}
	if running {
		d.must("kill", name)
	}
}

// TestInterruptedContainerCreate: a container checkpoint that stops its
// container is carried through or rolled back whole when its client
// leaves (two interrupts) at any moment: a new listed checkpoint has its
// statistics and its container stopped; a failure leaves the container
// running and nothing new listed.
func TestInterruptedContainerCreate(t *testing.T) {
	x, d, _ := withRunningContainer(t, "web", counterScript, 2)
	events := d.followEvents(t)
	const key = "container/default/web"
	for i, delay := range []time.Duration{60, 150, 250, 400} {
		created, failed := len(events.of("created", key)), len(events.of("failed", key))
		cmd := exec.Command(bins.ckptctl, "--socket", d.socket, "create", "ctr:default/web")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		time.Sleep(20 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		waitFor(t, "the create's outcome", func() bool {
			return len(events.of("created", key))+len(events.of("failed", key)) > created+failed
		})
		listed := d.checkpoints()
		switch st := x.status("web"); {
		case len(events.of("created", key)) > created:
			last := listed[len(listed)-1]
			if len(listed) != created+1 || last.Stats.FrozenTime == 0 || st == "running" {
				t.Fatalf("round %d: created, but %d listed (want %d), last %+v, container %q", i, len(listed), created+1, last.Stats, st)
			}
			d.must("restore", last.Name) // the next round needs it running
			waitFor(t, "the restored container", func() bool { return x.status("web") == "running" })
		default:
			if len(listed) != created || st != "running" {
				t.Fatalf("round %d: failed, but %d listed (want %d), container %q", i, len(listed), created, st)
			}
		}
	}
}
