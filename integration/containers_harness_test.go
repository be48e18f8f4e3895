package integration

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	"github.com/ckptd/ckptd/test/containerdtest"
	"github.com/ckptd/ckptd/test/ociimage"
)

const testImage = "ckptd.test/busybox:latest"

// counterScript writes a file into the container's writable layer, then
// prints a counter with that file's content, ten times a second.
const counterScript = `echo kept > /data/marker; i=0; while :; do i=$((i+1)); read m < /data/marker; echo "$i $m"; sleep 0.1; done`

var buildImage = sync.OnceValues(func() (*ociimage.Image, error) { return ociimage.Build(testImage, nil) })

// ctrd is a private containerd for one test.
type ctrd struct {
	t  *testing.T
	in *containerdtest.Instance
	c  *client.Client
}

// startContainerd starts a private containerd and, if withImage, imports
// the test image into namespace "default".
func startContainerd(t *testing.T, withImage bool) *ctrd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ckptd-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	in, err := containerdtest.Start(context.Background(), dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("private containerd: %v", err)
	}
	c, err := in.Client()
	if err != nil {
		in.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if err := in.Close(); err != nil {
			t.Errorf("clean up containerd: %v", err)
		}
	})
	x := &ctrd{t: t, in: in, c: c}
	if withImage {
		x.importImage()
	}
	return x
}

// withRunningContainer starts a private containerd with the test image, a
// ckptd talking to it, and container id running script until it printed
// a counter of n; it returns all three and the container's log path.
func withRunningContainer(t *testing.T, id, script string, n int) (*ctrd, *daemon, string) {
	t.Helper()
	x := startContainerd(t, true)
	d := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), x.in.Address)
	logPath := x.run(id, script)
	waitCount(t, logPath, n)
	return x, d, logPath
}

func (x *ctrd) ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), "default")
}

func (x *ctrd) importImage() {
	x.t.Helper()
	img, err := buildImage()
	if err != nil {
		x.t.Fatal(err)
	}
	if err := x.in.Import(context.Background(), "default", img.Layout); err != nil {
		x.t.Fatal(err)
	}
}

// run starts container id with script and returns its log path.
func (x *ctrd) run(id, script string) string {
	x.t.Helper()
	logPath := filepath.Join(x.in.Dir, id+".log")
	if err := x.in.Run(context.Background(), "default", testImage, id, script, logPath); err != nil {
		x.t.Fatal(err)
	}
	return logPath
}

// runPiped is run with the task's stdin a pipe, as ctr run -d gives it.
func (x *ctrd) runPiped(id, script string) string {
	x.t.Helper()
	logPath := filepath.Join(x.in.Dir, id+".log")
	if err := x.in.RunPiped(context.Background(), "default", testImage, id, script, logPath); err != nil {
		x.t.Fatal(err)
	}
	return logPath
}

// status is the task status of container id ("" when it has no task).
func (x *ctrd) status(id string) string {
	x.t.Helper()
	return x.statusIn("default", id)
}

// statusIn is status in namespace ns.
func (x *ctrd) statusIn(ns, id string) string {
	x.t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	ctr, err := x.c.LoadContainer(ctx, id)
	if err != nil {
		return "absent"
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return ""
	}
	st, err := task.Status(ctx)
	if cerrdefs.IsNotFound(err) {
		return "" // deleted since it was loaded: a create that stops it just did
	}
	if err != nil {
		x.t.Fatal(err)
	}
	return string(st.Status)
}

// counterLines parses the "N marker" lines a counter container printed.
func counterLines(log string) (counts []int, markers []string) {
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		counts = append(counts, n)
		markers = append(markers, strings.Join(f[1:], " "))
	}
	return counts, markers
}

// waitCount waits until the log at path shows a counter of at least n and
// returns the last value.
func waitCount(t *testing.T, path string, n int) int {
	t.Helper()
	last := 0
	waitFor(t, "counter "+strconv.Itoa(n)+" in "+filepath.Base(path), func() bool {
		counts, _ := counterLines(readFile(path))
		if len(counts) > 0 {
			last = counts[len(counts)-1]
		}
		return last >= n
	})
	return last
}

// counting reports whether the counter in the log at path still advances.
func counting(t *testing.T, path string) bool {
	t.Helper()
	counts, _ := counterLines(readFile(path))
	before := 0
	if len(counts) > 0 {
		before = counts[len(counts)-1]
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if c, _ := counterLines(readFile(path)); len(c) > 0 && c[len(c)-1] > before {
			return true
		}
	}
	return false
}

// killTask kills container id's task and waits for it to exit.
func (x *ctrd) killTask(id string) {
	x.t.Helper()
	ctr, err := x.c.LoadContainer(x.ctx(), id)
	if err != nil {
		x.t.Fatal(err)
	}
	task, err := ctr.Task(x.ctx(), nil)
	if err != nil {
		x.t.Fatal(err)
	}
	exited, err := task.Wait(x.ctx())
	if err != nil {
		x.t.Fatal(err)
	}
	if err := task.Kill(x.ctx(), syscall.SIGKILL, client.WithKillAll); err != nil {
		x.t.Fatal(err)
	}
	<-exited
}

// shimDelete has the shim of container id delete its task, behind
// containerd's back: containerd still lists the task.
func (x *ctrd) shimDelete(id string) {
	x.t.Helper()
	addr := readFile(filepath.Join(x.in.Dir, "state", "io.containerd.runtime.v2.task", "default", id, "address"))
	conn, err := net.Dial("unix", strings.TrimPrefix(strings.TrimSpace(addr), "unix://"))
	if err != nil {
		x.t.Fatalf("dial the shim of %s: %v", id, err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	if _, err := shimapi.NewTTRPCTaskClient(c).Delete(x.ctx(), &shimapi.DeleteRequest{ID: id}); err != nil {
		x.t.Fatalf("shim delete of %s: %v", id, err)
	}
}
