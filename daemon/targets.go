package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/workload"
)

// LogFile is the name of a workload's combined stdout/stderr log.
const LogFile = "output.log"

// TargetStatus is a known target and whether it runs.
type TargetStatus struct {
	store.Target
	Running bool
	Exit    string // how it ended, when known
}

// RunRequest launches a workload.
type RunRequest struct {
	Name string
	Args []string
	Env  []string
	Dir  string
}

// Run starts a workload as pid 1 of a new PID namespace.
func (d *Daemon) Run(ctx context.Context, req RunRequest) (*TargetStatus, error) {
	if err := store.ValidateName(req.Name); err != nil {
		return nil, err
	}
	ref := store.TargetRef{Kind: store.KindWorkload, Name: req.Name, Command: req.Args}
	unlock := d.locks.Lock(ref.Key())
	defer unlock()
	logPath, err := d.prepareWorkload(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	pid, err := d.sup.Launch(workload.Spec{Args: req.Args, Env: req.Env, Dir: req.Dir, LogPath: logPath})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", req.Name, err)
	}
	ref.PID, ref.LogPath = pid, logPath
	t := &store.Target{TargetRef: ref, Created: time.Now().UTC()}
	if st, err := proc.ReadStat(pid); err == nil {
		t.StartTime = st.StartTime
	}
	if err := d.store.PutTarget(ctx, t); err != nil {
		syscall.Kill(pid, syscall.SIGKILL) // not recorded: do not leave it running unknown
		return nil, fmt.Errorf("run %s: record target: %w", req.Name, err)
	}
	d.log.Info("workload started", "name", req.Name, "pid", pid, "command", req.Args)
	return d.status(t), nil
}

// prepareWorkload refuses a name that is in use by a running workload and
// makes the workload's directory; it returns the log path.
func (d *Daemon) prepareWorkload(ctx context.Context, name string) (string, error) {
	key := store.TargetRef{Kind: store.KindWorkload, Name: name}.Key()
	if old, err := d.store.GetTarget(ctx, key); err == nil && d.alive(old) {
		return "", fmt.Errorf("workload %q is running (pid %d): %w", name, old.PID, errdefs.ErrAlreadyExists)
	}
	dir := d.store.Layout().Workload(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(dir, LogFile), nil
}

// Ps lists known targets; all includes the ones that ended.
func (d *Daemon) Ps(ctx context.Context, all bool) ([]*TargetStatus, error) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return nil, err
	}
	var out []*TargetStatus
	for _, t := range ts {
		if s := d.status(t); all || s.Running {
			out = append(out, s)
		}
	}
	return out, nil
}

func (d *Daemon) alive(t *store.Target) bool { return proc.Alive(t.PID, t.StartTime) }

func (d *Daemon) status(t *store.Target) *TargetStatus {
	s := &TargetStatus{Target: *t, Running: d.alive(t)}
	if !s.Running {
		s.Exit = "gone"
		if e, ok := d.sup.ExitOf(t.PID); ok {
			s.Exit = e.String()
		}
	}
	return s
}

// Logs returns up to tail bytes (all when tail <= 0) of a workload's log.
func (d *Daemon) Logs(ctx context.Context, name string, tail int64) ([]byte, error) {
	t, err := d.workload(ctx, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(t.LogPath)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", name, err)
	}
	defer f.Close()
	if tail > 0 {
		if st, err := f.Stat(); err == nil && st.Size() > tail {
			if _, err := f.Seek(-tail, io.SeekEnd); err != nil {
				return nil, err
			}
		}
	}
	return io.ReadAll(io.LimitReader(f, 64<<20))
}

// Kill sends SIGKILL to a workload's tree (its PID namespace dies with pid 1)
// or to a known process.
func (d *Daemon) Kill(ctx context.Context, target string) error {
	ref, err := d.resolveRef(ctx, target)
	if err != nil {
		return err
	}
	unlock := d.locks.Lock(ref.Key())
	defer unlock()
	t, err := d.store.GetTarget(ctx, ref.Key())
	if err != nil {
		return err
	}
	if !d.alive(t) {
		return fmt.Errorf("%s is not running: %w", target, errdefs.ErrFailedPrecondition)
	}
	if err := syscall.Kill(t.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", target, err)
	}
	return nil
}

func (d *Daemon) workload(ctx context.Context, name string) (*store.Target, error) {
	t, err := d.store.GetTarget(ctx, store.TargetRef{Kind: store.KindWorkload, Name: name}.Key())
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("workload %q: %w", name, errdefs.ErrNotFound)
	}
	return t, err
}

// resolveRef turns a user's TARGET into a reference: a number is a PID (the
// workload it is the root of, if any), anything else a workload name.
func (d *Daemon) resolveRef(ctx context.Context, target string) (store.TargetRef, error) {
	if target == "" {
		return store.TargetRef{}, fmt.Errorf("no target given: %w", errdefs.ErrInvalidArgument)
	}
	pid, err := strconv.Atoi(target)
	if err != nil {
		t, err := d.workload(ctx, target)
		if err != nil {
			return store.TargetRef{}, err
		}
		return t.TargetRef, nil
	}
	if pid <= 0 {
		return store.TargetRef{}, fmt.Errorf("pid %d: %w", pid, errdefs.ErrInvalidArgument)
	}
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return store.TargetRef{}, err
	}
	for _, t := range ts {
		if t.PID == pid && d.alive(t) {
			return t.TargetRef, nil
		}
	}
	return store.TargetRef{Kind: store.KindProcess, PID: pid}, nil
}
