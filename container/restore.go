package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// RestoreRequest recreates a container from a checkpoint.
type RestoreRequest struct {
	Ref  Ref // the container to create
	From Ref // the container the checkpoint was taken of
	// MemoryBytes is about the size of the tree's memory, for the watchdog.
	MemoryBytes int64
	Source      Source
	ImagesDir   string
	WorkDir     string // runc's CRIU restore log
	SpecPath    string
	RootfsPath  string
	LogPath     string // the restored task's stdout and stderr
	// Verified is awaited before CRIU starts: a damaged checkpoint must
	// never run.
	Verified func() error
	// CRIUConfig, when set, is a CRIU configuration file runc passes to
	// this restore's CRIU (the org.criu.config annotation runc reads).
	CRIUConfig string
	// NetNS, when set, is the network namespace the container goes into:
	// its own was outside its checkpoint, and runc hands this one to CRIU
	// in its place (extRootNetNS).
	NetNS string
}

// criuConfigAnnotation names the CRIU configuration file runc gives CRIU.
const criuConfigAnnotation = "org.criu.config"

// RestoreResult is a restored container.
type RestoreResult struct {
	PID      int
	Warnings []string // what the restored container does not get as saved
}

// RestoreLogFile is what runc's CRIU writes into the work directory.
const RestoreLogFile = "restore.log"

// Restore creates req.Ref from the checkpoint's base image, writable layer
// and spec, and restores its task from the CRIU images. A stopped
// container of the same ID is replaced; a running one is refused. On
// failure nothing it created is left.
func (r *Runtime) Restore(ctx context.Context, req RestoreRequest) (res RestoreResult, err error) {
	ctx = namespaces.WithNamespace(ctx, req.Ref.Namespace)
	spec, err := readSpec(req.SpecPath)
	if err != nil {
		return res, err
	}
	if res.Warnings, err = rlimitWarnings(spec); err != nil {
		return res, err
	}
	// Everything that can refuse the restore comes before a stopped
	// container of the same ID is replaced.
	img, err := r.baseImage(ctx, req)
	if err != nil {
		return res, err
	}
	if err := r.removeStopped(ctx, req.Ref, req.Verified); err != nil {
		return res, err
	}
	if req.CRIUConfig != "" {
		if spec.Annotations == nil {
			spec.Annotations = map[string]string{}
		}
		spec.Annotations[criuConfigAnnotation] = req.CRIUConfig
	}
	if err := localSources(spec, filepath.Join(filepath.Dir(req.LogPath), "mounts"), filepath.Join(req.ImagesDir, store.DevShmFile)); err != nil {
		return res, fmt.Errorf("restore %s: %w", req.Ref, err)
	}
	if req.NetNS != "" {
		joinNetNS(spec, req.NetNS)
	}
	if req.Ref != req.From && spec.Linux != nil && spec.Linux.CgroupsPath != "" {
		// A copy beside the original needs its own cgroup.
		spec.Linux.CgroupsPath = copyCgroupPath(spec.Linux.CgroupsPath, req.From, req.Ref)
	}
	c, err := r.client.NewContainer(ctx, req.Ref.ID,
		client.WithImage(img),
		client.WithSnapshotter(req.Source.Snapshotter),
		client.WithNewSnapshot(req.Ref.ID, img),
		client.WithSpec(spec),
		client.WithRuntime(req.Source.Runtime, nil),
		client.WithContainerLabels(req.Source.Labels))
	if err != nil {
		return res, fmt.Errorf("create container %s: %w", req.Ref, r.wrap(err))
	}
	defer func() {
		if err != nil {
			dctx := context.WithoutCancel(ctx)
			if derr := c.Delete(dctx, client.WithSnapshotCleanup); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean up container %s: %w", req.Ref, r.wrap(derr)))
			}
		}
	}()
	if req.Source.RootfsMediaType != "" {
		if err := r.applyRootfs(ctx, req.Source.Snapshotter, req.Ref.ID, req.Source.RootfsMediaType, req.RootfsPath); err != nil {
			return res, fmt.Errorf("restore writable layer of %s: %w", req.Ref, err)
		}
	}
	if err := req.Verified(); err != nil {
		return res, err
	}
	res.PID, err = r.startRestored(ctx, c, req, spec.Process != nil && spec.Process.Terminal)
	return res, err
}

// joinNetNS has the container join the network namespace at path.
func joinNetNS(spec *specs.Spec, path string) {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	for i, n := range spec.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
			return
		}
	}
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

// startRestored creates the task from the CRIU images: runc restores it.
func (r *Runtime) startRestored(ctx context.Context, c client.Container, req RestoreRequest, terminal bool) (int, error) {
	task, err := c.NewTask(ctx, logIO(req.LogPath, terminal),
		client.WithRestoreImagePath(req.ImagesDir), client.WithRestoreWorkPath(req.WorkDir))
	if err != nil {
		return 0, fmt.Errorf("create task of %s: %w", req.Ref, r.wrap(err))
	}
	logPath := filepath.Join(req.WorkDir, RestoreLogFile)
	err = r.watched(ctx, req.Ref.ID, "restore", logPath, req.MemoryBytes, nil, task.Start)
	if err != nil {
		if !errdefs.IsDeadlineExceeded(err) {
			err = criu.Error("restore", logPath, r.runcError(err))
		}
		if derr := endTask(context.WithoutCancel(ctx), task); derr != nil && !cerrdefs.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("clean up task of %s: %w", req.Ref, r.wrap(derr)))
		}
		return 0, err
	}
	return int(task.Pid()), nil
}

// endTask removes a task whose start failed. runc may have restored and
// started its process all the same (a failure after CRIU's), so a
// running one is killed and awaited first.
func endTask(ctx context.Context, task client.Task) error {
	if st, err := task.Status(ctx); err == nil && st.Status != client.Stopped && st.Status != client.Created {
		exited, err := task.Wait(ctx)
		if err == nil && task.Kill(ctx, syscall.SIGKILL, client.WithKillAll) == nil {
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
			}
		}
	}
	_, err := task.Delete(ctx, client.WithProcessKill)
	return err
}

// logIO sends a restored task's output to the file at path. Its stdin is
// a pipe the shim keeps: runc hands the task's saved stdin pipe the
// restore's own stdin, which without one is the host's /dev/null, a file
// outside the container's mounts that no later checkpoint can dump. A
// container with a terminal (ctr run -t) needs the shim to make a console
// for runc's restore; the shim then copies the console to the file.
func logIO(path string, terminal bool) cio.Creator {
	if !terminal {
		return func(id string) (cio.IO, error) {
			stdin := filepath.Join(filepath.Dir(path), "stdin")
			if err := os.Remove(stdin); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			if err := unix.Mkfifo(stdin, 0o600); err != nil {
				return nil, fmt.Errorf("stdin of the restored task: %w", err)
			}
			out, err := cio.LogFile(path)(id)
			if err != nil {
				return nil, err
			}
			cfg := out.Config()
			cfg.Stdin = stdin
			return shimIO{cfg}, nil
		}
	}
	return func(string) (cio.IO, error) {
		// The shim's console copy takes the path of a file that exists.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		f.Close()
		return shimIO{cio.Config{Stdout: path, Terminal: true}}, nil
	}
}

// shimIO is a cio.IO whose copying the shim does (stdio it holds).
type shimIO struct{ cfg cio.Config }

func (l shimIO) Config() cio.Config { return l.cfg }
func (shimIO) Cancel()              {}
func (shimIO) Wait()                {}
func (shimIO) Close() error         { return nil }

// removeStopped makes room for an in-place restore: a container of the
// same ID may stay behind, stopped, after its checkpoint; a running one
// is never touched, and a stopped one only once verified says the
// checkpoint is sound.
func (r *Runtime) removeStopped(ctx context.Context, ref Ref, verified func() error) error {
	c, err := r.client.LoadContainer(ctx, ref.ID)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return r.wrap(err)
	}
	task, err := c.Task(ctx, nil)
	hasTask := err == nil
	if err != nil && !cerrdefs.IsNotFound(err) {
		return r.wrap(err)
	}
	if hasTask {
		st, err := task.Status(ctx)
		if err != nil {
			return r.wrap(err)
		}
		if st.Status != client.Stopped {
			return fmt.Errorf("container %s exists and is %s; restore under another name with --name: %w", ref, st.Status, errdefs.ErrAlreadyExists)
		}
	}
	if err := verified(); err != nil {
		return err
	}
	if hasTask {
		if _, err := task.Delete(ctx); err != nil {
			return fmt.Errorf("remove stopped task of %s: %w", ref, r.wrap(err))
		}
	} else if err := r.removeHalfDeleted(ctx, ref); err != nil {
		return err
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("remove stopped container %s: %w", ref, r.wrap(err))
	}
	r.log.Info("replaced stopped container with its restore", "container", ref.String())
	return nil
}

// baseImage finds the checkpoint's base image, the same digest, unpacked
// for the snapshotter the container used.
func (r *Runtime) baseImage(ctx context.Context, req RestoreRequest) (client.Image, error) {
	src := req.Source
	img, err := r.findImage(ctx, req.Ref.Namespace, src)
	if err != nil {
		return nil, err
	}
	unpacked, err := img.IsUnpacked(ctx, src.Snapshotter)
	if err != nil {
		return nil, r.wrap(err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, src.Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", src.Image, r.wrap(err))
		}
	}
	return img, nil
}

// copyCgroupPath is the cgroup of copy to of container from: containerd's
// usual /NAMESPACE/ID becomes to's, a systemd slice:prefix:name gets to's
// ID as its name, any other path as its last element.
func copyCgroupPath(p string, from, to Ref) string {
	if base, ok := strings.CutSuffix(p, "/"+from.Namespace+"/"+from.ID); ok {
		return base + "/" + to.Namespace + "/" + to.ID
	}
	if f := strings.Split(p, ":"); len(f) == 3 && !strings.HasPrefix(p, "/") {
		return f[0] + ":" + f[1] + ":" + to.ID
	}
	return path.Join(path.Dir(p), to.ID)
}

func readSpec(p string) (*specs.Spec, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("container spec %s: %w", p, errdefs.ErrDataLoss)
	}
	return &spec, nil
}

// removeHalfDeleted removes what containerd may still list of a task
// whose deletion was cut short (a ckptd killed while it asked): its shim
// no longer knows the task, so the task cannot be loaded, yet a new one of
// the same ID is refused as existing.
func (r *Runtime) removeHalfDeleted(ctx context.Context, ref Ref) error {
	_, err := r.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: ref.ID})
	if err = r.wrap(err); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("remove the half-deleted task of %s: %w", ref, err)
	}
	return nil
}
