// Package containerdtest starts a private containerd for tests and
// benchmarks: its own root, state, socket and config (CRI disabled), so it
// never touches the host's containerd, and Close removes everything it made.
package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"golang.org/x/sys/unix"
)

// Instance is a running private containerd.
type Instance struct {
	Dir     string // holds root/, state/, the socket, config and log
	Address string
	cmd     *exec.Cmd
	done    chan error
}

// Start launches containerd under dir (which must exist and be empty) and
// waits until it answers. PATH puts /usr/local/sbin first so that runc
// finds the CRIU that `make deps` installed.
func Start(ctx context.Context, dir string) (*Instance, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd is not installed (make deps): %w", err)
	}
	in := &Instance{Dir: dir, Address: filepath.Join(dir, "c.sock"), done: make(chan error, 1)}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), in.Address, in.Address+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	in.cmd = exec.Command(bin, "--config", cfgPath)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	in.cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := in.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { in.done <- in.cmd.Wait() }()
	if err := in.waitReady(ctx); err != nil {
		return nil, errors.Join(err, in.Close())
	}
	return in, nil
}

func (in *Instance) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-in.done:
			in.done <- err
			return fmt.Errorf("containerd exited at start: %v; log: %s", err, in.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(in.Address); err != nil {
			continue
		}
		c, err := in.Client()
		if err != nil {
			continue
		}
		_, err = c.Version(ctx)
		c.Close()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("containerd did not answer on %s within 30s; log: %s", in.Address, in.logTail())
}

func (in *Instance) logTail() string {
	b, _ := os.ReadFile(filepath.Join(in.Dir, "containerd.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Client connects to the instance.
func (in *Instance) Client() (*client.Client, error) {
	return client.New(in.Address, client.WithTimeout(5*time.Second))
}

// Import loads an OCI layout tar into namespace ns.
func (in *Instance) Import(ctx context.Context, ns string, layout []byte) error {
	c, err := in.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, ns)
	imgs, err := c.Import(ctx, bytes.NewReader(layout))
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for _, img := range imgs {
		if err := client.NewImage(c, img).Unpack(ctx, ""); err != nil {
			return fmt.Errorf("unpack %s: %w", img.Name, err)
		}
	}
	return nil
}

// Run creates and starts container id in namespace ns from image, running
// sh -c script, with its output in logPath.
func (in *Instance) Run(ctx context.Context, ns, image, id, script, logPath string) error {
	return in.start(ctx, ns, image, id, script, nil, cio.LogFile(logPath))
}

// RunPiped is Run with the task's stdin a pipe that is never written, as
// ctr run -d and nerdctl run -d give it (Run's has none: /dev/null).
func (in *Instance) RunPiped(ctx context.Context, ns, image, id, script, logPath string) error {
	stdin := filepath.Join(in.Dir, id+".stdin")
	if err := unix.Mkfifo(stdin, 0o600); err != nil {
		return err
	}
	return in.start(ctx, ns, image, id, script, nil, func(id string) (cio.IO, error) {
		out, err := cio.LogFile(logPath)(id)
		if err != nil {
			return nil, err
		}
		cfg := out.Config()
		cfg.Stdin = stdin
		return pipedIO{cfg}, nil
	})
}

// pipedIO is a cio.IO whose copying the shim does.
type pipedIO struct{ cfg cio.Config }

func (p pipedIO) Config() cio.Config { return p.cfg }
func (pipedIO) Cancel()              {}
func (pipedIO) Wait()                {}
func (pipedIO) Close() error         { return nil }

// RunTTY starts container id with script on a terminal (a console the
// shim makes, as ctr run -t does); what it writes goes to out.
func (in *Instance) RunTTY(ctx context.Context, ns, image, id, script string, out io.Writer) error {
	stdin, _ := io.Pipe() // never written: the script reads no keys
	return in.start(ctx, ns, image, id, script, oci.WithTTY, cio.NewCreator(cio.WithStreams(stdin, out, nil), cio.WithTerminal))
}

// start creates container id from image running sh -c script (with opt
// added to its spec, when set) and starts its task with stdio.
func (in *Instance) start(ctx context.Context, ns, image, id, script string, opt oci.SpecOpts, stdio cio.Creator) error {
	c, err := in.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, ns)
	img, err := c.GetImage(ctx, image)
	if err != nil {
		return err
	}
	opts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs("/bin/sh", "-c", script)}
	if opt != nil {
		opts = append(opts, opt)
	}
	ctr, err := c.NewContainer(ctx, id, client.WithNewSnapshot(id, img), client.WithNewSpec(opts...))
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	task, err := ctr.NewTask(ctx, stdio)
	if err != nil {
		return fmt.Errorf("create task %s: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// Close kills and deletes every task and container (so that their shims
// exit), stops containerd, unmounts what is left under Dir and removes it.
func (in *Instance) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if c, err := in.Client(); err == nil {
		errs = append(errs, deleteAll(ctx, c))
		c.Close()
	}
	if in.cmd != nil && in.cmd.Process != nil {
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(20 * time.Second):
			in.cmd.Process.Kill()
			<-in.done
		}
	}
	errs = append(errs, UnmountUnder(in.Dir), os.RemoveAll(in.Dir))
	return errors.Join(errs...)
}

func deleteAll(ctx context.Context, c *client.Client) error {
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := c.Containers(nctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ctr := range ctrs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, client.WithProcessKill); err != nil {
					errs = append(errs, fmt.Errorf("delete task %s: %w", ctr.ID(), err))
				}
			}
			if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				errs = append(errs, fmt.Errorf("delete container %s: %w", ctr.ID(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// UnmountUnder detaches every mount below dir, deepest first.
func UnmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}
