package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptd/ckptd/test/nettest"
)

// offsetApp counts records as it reads them (its input position), and
// commits an outside file, records 1..N, only once a checkpoint holding
// them is sealed: two-phase commit of an outside effect. At prepare it
// answers with its position; when restored, it takes the position back.
const offsetApp = `
import base64, os, socket, sys, threading, time
out = sys.argv[1]
lock = threading.Lock()
pos, prepared, committed = 0, 0, 0
def read_input():
    global pos
    while True:
        with lock:
            pos += 1
        time.sleep(0.01)
threading.Thread(target=read_input, daemon=True).start()
s = socket.socket(socket.AF_UNIX)
s.bind("\0" + os.environ["CKPTD_NOTIFY_SOCKET"][1:])
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    word, _, rest = c.makefile().readline().strip().partition(" ")
    if word == "prepare":
        with lock:
            prepared = pos
        c.sendall(b"ready " + base64.b64encode(str(prepared).encode()) + b"\n")
    elif word == "sealed":
        with open(out, "a") as f:
            f.write("".join("%d\n" % n for n in range(committed + 1, prepared + 1)))
        committed = prepared
        c.sendall(b"ok\n")
    elif word == "restored":
        ident, _, payload = rest.partition(" ")
        with lock:
            pos = int(base64.b64decode(payload))
        print("restored", ident, pos, flush=True)
        c.sendall(b"ok\n")
    c.close()
`

// TestAppHooks: a workload told of its checkpoints. Each --leave-running
// checkpoint keeps the position the workload answered prepare with, and
// the workload commits its outside file up to it only once sealed; a
// checkpoint that stops it, restored, hands the position back. The file
// ends with every record once, in order: no duplicate, no gap. A workload
// that does not answer prepare in time fails the checkpoint in one line
// and runs on, not frozen; one that does not listen is checkpointed as
// before.
func TestAppHooks(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	out := filepath.Join(t.TempDir(), "committed")
	d.must("run", "--name", "app", "--", "python3", "-c", offsetApp, out)
	waitFor(t, "the app to listen", func() bool { return strings.Contains(d.must("logs", "app"), "listening") })

	offset := func(name string) int {
		var c struct {
			Checkpoint struct {
				AppState string `json:"app_state"`
			} `json:"checkpoint"`
		}
		if err := json.Unmarshal([]byte(d.must("inspect", name, "-o", "json")), &c); err != nil {
			t.Fatal(err)
		}
		b, _ := base64.StdEncoding.DecodeString(c.Checkpoint.AppState)
		n, err := strconv.Atoi(string(b))
		if err != nil {
			t.Fatalf("%s keeps app state %q", name, b)
		}
		return n
	}
	committed := func() string { return readFile(out) }
	upTo := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		return b.String()
	}

	d.must("create", "app", "--leave-running", "--name", "app-1")
	o1 := offset("app-1")
	waitFor(t, "the commit of app-1", func() bool { return committed() == upTo(o1) })
	d.must("create", "app", "--leave-running", "--name", "app-2")
	o2 := offset("app-2")
	waitFor(t, "the commit of app-2", func() bool { return committed() == upTo(o2) })

	c3 := d.create("app", "--name", "app-3") // stops it: nothing to commit
	o3 := offset("app-3")
	d.must("restore", "app-3")
	want := fmt.Sprintf("restored %s %d", c3.ID, o3)
	waitFor(t, "the app told it was restored", func() bool { return strings.Contains(d.must("logs", "app"), want) })
	d.must("create", "app", "--leave-running", "--name", "app-4")
	o4 := offset("app-4")
	waitFor(t, "the commit of app-4", func() bool { return committed() == upTo(o4) })
	if !(o1 < o2 && o2 < o3 && o3 < o4) {
		t.Errorf("positions %d %d %d %d do not grow", o1, o2, o3, o4)
	}
	if !strings.Contains(d.must("inspect", "app-4"), "App state:") {
		t.Error("inspect does not show the app state")
	}

	// A workload that listens and never answers; one that does not listen.
	d.must("run", "--name", "mute", "--", "python3", "-c", `import os, socket, time
s = socket.socket(socket.AF_UNIX); s.bind("\0" + os.environ["CKPTD_NOTIFY_SOCKET"][1:]); s.listen()
print("listening", flush=True)
time.sleep(100000)`)
	waitFor(t, "mute to listen", func() bool { return strings.Contains(d.must("logs", "mute"), "listening") })
	d.mustFail("did not get ready", "create", "mute", "--leave-running", "--prepare-timeout", "500ms")
	if w := d.workload("mute"); !running(w.Ref.PID) || !regexp.MustCompile(`listening`).MatchString(d.must("logs", "mute")) {
		t.Errorf("mute after a failed prepare: running %v", running(w.Ref.PID))
	}
	d.must("run", "--name", "deaf", "--", "sleep", "1000")
	d.must("create", "deaf", "--leave-running")
}

// TestCommandHooks: run --hook for programs that cannot listen. prepare's
// output becomes the checkpoint's state; sealed and restored are told the
// checkpoint and that state; each runs in the workload's namespaces (its
// PID 1 is the workload). A prepare hook that fails or outlasts
// --prepare-timeout fails the checkpoint in one line and leaves the
// workload running; hooks in an archive from outside are dropped.
func TestCommandHooks(t *testing.T) {
	nettest.KeepHost(t, "ckptd0", "ckptd")
	d := startDaemon(t)
	out := filepath.Join(t.TempDir(), "hooks")
	d.must("run", "--name", "hooked",
		"--hook", `prepare=readlink /proc/self/ns/net`,
		"--hook", "sealed=echo sealed $CKPTD_CHECKPOINT >> "+out,
		"--hook", "restored=echo restored $CKPTD_CHECKPOINT $CKPTD_APP_STATE >> "+out,
		"--", "sleep", "100000")
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", d.workload("hooked").Ref.PID))
	if err != nil {
		t.Fatal(err)
	}
	c1 := d.create("hooked", "--leave-running", "--name", "hooked-1")
	if !strings.Contains(d.must("inspect", "hooked-1"), strconv.Quote(ns)) {
		t.Errorf("the prepare hook's output is not the state, or it ran outside the workload's %s:\n%s", ns, d.must("inspect", "hooked-1"))
	}
	waitFor(t, "the sealed hook", func() bool { return strings.Contains(readFile(out), "sealed "+c1.ID) })
	c2 := d.create("hooked", "--name", "hooked-2")
	d.must("restore", "hooked-2")
	want := "restored " + c2.ID + " " + base64.StdEncoding.EncodeToString([]byte(ns))
	if !strings.Contains(readFile(out), want) {
		t.Errorf("the restored hook wrote %q, want a line %q", readFile(out), want)
	}

	d.must("run", "--name", "failing", "--hook", "prepare=echo no >&2; exit 3", "--", "sleep", "100000")
	d.must("run", "--name", "slow", "--hook", "prepare=sleep 30", "--", "sleep", "100000")
	d.mustFailAll(t, []failCase{
		{"exit status 3", []string{"create", "failing", "--leave-running"}},
		{"did not end within 500ms", []string{"create", "slow", "--leave-running", "--prepare-timeout", "500ms"}},
		{"want prepare=CMD", []string{"run", "--name", "bad", "--hook", "dump=true", "--", "true"}},
	})
	for _, name := range []string{"failing", "slow"} {
		if w := d.workload(name); !running(w.Ref.PID) {
			t.Errorf("%s is not running after its prepare hook failed", name)
		}
	}
	if !strings.Contains(d.must("logs", "failing"), "no") {
		t.Error("the hook's output is not in the workload's log")
	}

	archive := filepath.Join(t.TempDir(), "hooked.tar")
	d.must("export", "hooked-1", archive)
	var c struct {
		Dropped []string `json:"dropped"`
	}
	if err := json.Unmarshal([]byte(d.must("import", archive, "--name", "from-outside", "-o", "json")), &c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(c.Dropped, ";"), "command hook") {
		t.Errorf("an import kept command hooks: dropped %v", c.Dropped)
	}
}
