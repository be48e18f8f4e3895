package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// Options are the CRIU switches passed through containerd to runc.
type Options struct {
	LeaveRunning   bool
	TCPEstablished bool
	FileLocks      bool
	ExtUnixSk      bool
	ShellJob       bool
}

// Source is what recreating a container needs besides its files.
type Source struct {
	Image           string
	ImageDigest     string
	ImageID         string // the config digest, when ImageDigest is unknown
	Snapshotter     string
	Runtime         string
	Labels          map[string]string
	RootfsMediaType string // "" when there was no writable layer
}

// CheckpointRequest is one container checkpoint.
type CheckpointRequest struct {
	Ref        Ref
	ImagesDir  string // CRIU images go here, straight from runc
	WorkDir    string // runc's CRIU log and statistics
	SpecPath   string // where to save the OCI spec
	RootfsPath string // where to save the writable layer as a tar
	// PausedMarker is written while the container is paused by this
	// checkpoint, so that a ckptd that dies meanwhile can resume it at start.
	PausedMarker string
	Options      Options
	// Commit runs while the container is still frozen with every file
	// written. Only when it returns nil is the container stopped (unless
	// LeaveRunning); when it fails the container resumes as it was.
	Commit func(Source) error
}

// CheckpointResult is what a successful checkpoint reports.
type CheckpointResult struct {
	PID   int
	Stats *stats.DumpStatsEntry
}

// Files runc's CRIU writes into the work directory.
const (
	DumpLogFile = "dump.log"
	StatsFile   = "stats-dump"
)

// Checkpoint freezes the container, saves its spec, writable layer and CRIU
// images, commits, and then stops it (or resumes it with LeaveRunning). On
// any failure before the commit the container is resumed as it was.
func (r *Runtime) Checkpoint(ctx context.Context, req CheckpointRequest) (res CheckpointResult, err error) {
	ctx = namespaces.WithNamespace(ctx, req.Ref.Namespace)
	c, err := r.client.LoadContainer(ctx, req.Ref.ID)
	if err != nil {
		return res, fmt.Errorf("container %s: %w", req.Ref, r.wrap(err))
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("container %s has no task to checkpoint: %w", req.Ref, errdefs.ErrFailedPrecondition)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return res, r.wrap(err)
	}
	if st.Status != client.Running && st.Status != client.Paused {
		return res, fmt.Errorf("container %s is %s, not running: %w", req.Ref, st.Status, errdefs.ErrFailedPrecondition)
	}
	res.PID = int(task.Pid())
	if st.Status == client.Running {
		resume, err := r.pause(ctx, task, req)
		if err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, resume()) }()
	}

	t0 := time.Now()
	src, err := r.saveState(ctx, c, req)
	if err != nil {
		return res, err
	}
	t1 := time.Now()
	if err := r.dump(ctx, task, req); err != nil {
		return res, err
	}
	t2 := time.Now()
	if err := req.Commit(src); err != nil {
		return res, err
	}
	t3 := time.Now()
	res.Stats, err = readStats(req.WorkDir)
	if !req.Options.LeaveRunning {
		// Committed: it stops whatever the caller does meanwhile.
		if kerr := stopTask(context.WithoutCancel(ctx), task); kerr != nil {
			err = errors.Join(err, fmt.Errorf("stopping container %s failed: %w", req.Ref, r.wrap(kerr)))
		}
	}
	r.log.Debug("container checkpoint", "container", req.Ref.String(), "save_state", t1.Sub(t0),
		"runc_checkpoint", t2.Sub(t1), "commit", t3.Sub(t2), "stop", time.Since(t3))
	return res, err
}

// saveState writes the spec and the writable layer while the container is
// frozen, so that both match its memory.
func (r *Runtime) saveState(ctx context.Context, c client.Container, req CheckpointRequest) (Source, error) {
	info, src, err := r.source(ctx, c, req.Ref)
	if err != nil {
		return Source{}, err
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return Source{}, r.wrap(err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return Source{}, err
	}
	if err := os.WriteFile(req.SpecPath, data, 0o600); err != nil {
		return Source{}, err
	}
	if info.SnapshotKey != "" {
		if src.RootfsMediaType, err = r.saveRootfs(ctx, info.Snapshotter, info.SnapshotKey, req.RootfsPath); err != nil {
			return Source{}, fmt.Errorf("save writable layer of %s: %w", req.Ref, err)
		}
	}
	return src, nil
}

// dump has runc write CRIU's images into req.ImagesDir. The container is
// paused, and runc leaves it paused: it is stopped only after the commit.
func (r *Runtime) dump(ctx context.Context, task client.Task, req CheckpointRequest) error {
	opts := &options.CheckpointOptions{
		OpenTcp:             req.Options.TCPEstablished,
		ExternalUnixSockets: req.Options.ExtUnixSk,
		Terminal:            req.Options.ShellJob,
		FileLocks:           req.Options.FileLocks,
		ImagePath:           req.ImagesDir,
		WorkPath:            req.WorkDir,
	}
	logPath := filepath.Join(req.WorkDir, DumpLogFile)
	pid := int(task.Pid())
	shim := 0 // the parent of the container's init, where runc's orphans go
	if st, err := proc.ReadStat(pid); err == nil {
		shim = st.PPID
	}
	err := r.watched(ctx, req.Ref.ID, "dump", logPath, proc.TreeRSS(pid), criu.DumpKeys(pid), func(ctx context.Context) error {
		_, err := task.Checkpoint(ctx, func(i *client.CheckpointTaskInfo) error {
			i.Options = opts
			return nil
		})
		return err
	})
	if errdefs.IsDeadlineExceeded(err) {
		return err
	}
	if err != nil {
		// runc may have died (killed, crashed) with its CRIU still at work:
		// that one ends before the caller resumes the container.
		if n := endOrphanedCRIU(shim, req.ImagesDir); n > 0 {
			r.log.Warn("runc failed and left its CRIU running; ended it", "container", req.Ref.String(), "processes", n)
		}
		return criu.Error("dump", logPath, r.runcError(err))
	}
	return nil
}

// runcError shortens runc's report of a CRIU failure, which names a copy
// of the log in containerd's state that goes away with the task; the
// caller names ckptd's own copy and its error lines instead.
func (r *Runtime) runcError(err error) error {
	if strings.Contains(err.Error(), "criu failed") {
		return errors.New("runc: criu failed")
	}
	return r.wrap(err)
}

// stopTask kills a (frozen) task and removes it, leaving the container
// record and its snapshot for inspection or an in-place restore.
func stopTask(ctx context.Context, task client.Task) error {
	exited, err := task.Wait(ctx)
	if err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !isGone(err) {
		return err
	}
	// runc thaws a frozen container to deliver SIGKILL; resume if not.
	if err := resumeIfPaused(ctx, task); err != nil && !isGone(err) {
		return err
	}
	<-exited
	_, err = task.Delete(ctx)
	return err
}

func readStats(workDir string) (*stats.DumpStatsEntry, error) {
	dir, err := os.Open(workDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	st, err := stats.CriuGetDumpStats(dir)
	if err != nil {
		return nil, fmt.Errorf("read dump stats: %w", err)
	}
	return st, nil
}
