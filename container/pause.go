package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
)

// pause freezes the container and returns what thaws it again; a marker
// on disk lets a restarted ckptd thaw it if this one dies in between.
func (r *Runtime) pause(ctx context.Context, task client.Task, req CheckpointRequest) (resume func() error, err error) {
	if err := writeMarker(req.PausedMarker, req.Ref); err != nil {
		return nil, err
	}
	if err := task.Pause(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("pause %s: %w", req.Ref, r.wrap(err)), os.Remove(req.PausedMarker))
	}
	return func() error {
		// A context of its own: the request's may be cancelled, and the
		// container must not stay frozen.
		ctx := namespaces.WithNamespace(context.WithoutCancel(ctx), req.Ref.Namespace)
		if err := resumeIfPaused(ctx, task); err != nil && !isGone(err) {
			return fmt.Errorf("resume %s: %w", req.Ref, r.wrap(err))
		}
		return os.Remove(req.PausedMarker)
	}, nil
}

func writeMarker(path string, ref Ref) error {
	data, err := json.Marshal(ref)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return errors.Join(fmt.Errorf("write pause marker: %w", err), removeIfExists(path))
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ResumeMarked thaws the container named in a marker that a checkpoint
// left because ckptd died while the container was paused, and removes the
// marker.
func (r *Runtime) ResumeMarked(ctx context.Context, marker string) (Ref, error) {
	data, err := os.ReadFile(marker)
	if err != nil {
		return Ref{}, err
	}
	var m Ref
	if err := json.Unmarshal(data, &m); err != nil {
		return Ref{}, fmt.Errorf("marker %s: %w", marker, err)
	}
	ref, err := NewRef(m.Namespace, m.ID)
	if err != nil {
		return Ref{}, fmt.Errorf("marker %s: %w", marker, err)
	}
	ctx = namespaces.WithNamespace(ctx, ref.Namespace)
	c, err := r.client.LoadContainer(ctx, ref.ID)
	if err == nil {
		var task client.Task
		if task, err = c.Task(ctx, nil); err == nil {
			err = resumeIfPaused(ctx, task)
		}
	}
	if err != nil && !isGone(err) {
		return ref, fmt.Errorf("resume %s: %w", ref, r.wrap(err))
	}
	return ref, os.Remove(marker)
}

func resumeIfPaused(ctx context.Context, task client.Task) error {
	st, err := task.Status(ctx)
	if err != nil || st.Status != client.Paused {
		return err
	}
	err = task.Resume(ctx)
	if err != nil && strings.Contains(err.Error(), "not paused") {
		// containerd still records the pause, but the freezer was thawed
		// under it: CRIU thaws the cgroup while it holds the tasks by
		// ptrace, and a CRIU killed then never freezes it back. Frozen
		// again, runc's resume thaws it and containerd's record follows.
		if ferr := freezeCgroup(int(task.Pid())); ferr != nil {
			return errors.Join(err, ferr)
		}
		err = task.Resume(ctx)
	}
	if err != nil {
		// A kill may have stopped it since we looked; only a task that
		// is still paused is a failure.
		if st, serr := task.Status(ctx); serr == nil && st.Status != client.Paused {
			return nil
		}
		return err
	}
	return nil
}

// freezeCgroup freezes the cgroup of pid through the cgroup file system
// (v1 freezer or v2 cgroup.freeze) and waits until it is frozen.
func freezeCgroup(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var file, value, done string
		switch {
		case slices.Contains(strings.Split(f[1], ","), "freezer"):
			file, value, done = filepath.Join("/sys/fs/cgroup/freezer", f[2], "freezer.state"), "FROZEN", "FROZEN"
		case f[0] == "0" && f[1] == "":
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				continue // the v1 hierarchy's unified line; the freezer line says where
			}
			file, value, done = filepath.Join("/sys/fs/cgroup", f[2], "cgroup.freeze"), "1", "1"
		default:
			continue
		}
		if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
			return fmt.Errorf("freeze cgroup of %d: %w", pid, err)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if got, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(got)) == done {
				return nil
			}
		}
		return fmt.Errorf("freeze cgroup of %d: %s not %s after 5 s", pid, file, done)
	}
	return fmt.Errorf("freeze cgroup of %d: no freezer in /proc/%d/cgroup", pid, pid)
}

// isGone tells errors that mean the task is no longer there to act on.
func isGone(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsFailedPrecondition(err) || errors.Is(err, os.ErrNotExist)
}
