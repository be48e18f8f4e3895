package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/restorer"
	"github.com/ckptd/ckptd/store"
)

// RestoreRequest asks for a checkpoint to be brought back.
type RestoreRequest struct {
	Checkpoint string
	// Name restores a workload checkpoint as a new, independent workload
	// beside the original. Empty restores under the original name.
	Name string
	// Latest takes Checkpoint as a target and restores its newest sealed
	// checkpoint.
	Latest bool
	// TCPClose restores established TCP connections closed: their peers
	// are gone (CRIU's tcp-close).
	TCPClose bool
	// Publish publishes the restored workload's ports on these host
	// ports (HOSTPORT:PORT[/tcp|/udp]) instead of its original's; a copy
	// publishes none unless asked.
	Publish []string
	// A restart sets these: its count and how it was run.
	restarts int
	launch   *store.Launch
}

// Restore verifies a checkpoint and restores it. Verification runs beside
// CRIU and must pass before the restored tree may run: a damaged checkpoint
// is refused and whatever CRIU restored is killed.
func (d *Daemon) Restore(ctx context.Context, req RestoreRequest) (*TargetStatus, error) {
	start := time.Now()
	if req.Latest {
		latest, err := d.latestSealed(ctx, req.Checkpoint)
		if err != nil {
			return nil, err
		}
		req.Checkpoint = latest.ID
	}
	// Held from here on: rm refuses a checkpoint being restored.
	c, release, err := d.acquire(ctx, req.Checkpoint, true)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := d.store.Present(ctx, c); err != nil {
		return nil, fmt.Errorf("restore %s: %w", c.Name, err)
	}
	ref, err := d.restoreTarget(c, req.Name, d.store.Dir(c.ID))
	if err != nil {
		return nil, err
	}
	unlock, err := d.locks.Lock(ctx, ref.Key())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if req.launch == nil {
		d.halt(ref.Key(), false) // a user's restore: its restarts are on again
	}

	var t *store.Target
	var warnings []string
	publish, err := parsePorts(req.Publish)
	if err != nil {
		return nil, err
	}
	if ref.Kind == store.KindContainer && publish != nil {
		return nil, fmt.Errorf("restore %s: --publish: containers publish their ports through containerd's network, not ckptd's: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	if ref.Kind == store.KindContainer && req.TCPClose {
		return nil, fmt.Errorf("restore %s: --tcp-close: containers restore through runc, which has no such option: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	if ref.Kind == store.KindContainer {
		t, warnings, err = d.restoreContainer(ctx, c, ref, d.verifyAsync(ctx, c), false)
	} else {
		how := &restoreHow{TCPClose: req.TCPClose, Publish: publish, restarts: req.restarts, launch: req.launch}
		t, err = d.restore(ctx, c, ref, d.store.Dir(c.ID), d.verifyAsync(ctx, c), how)
		warnings = how.warnings
		if err == nil {
			warnings = append(warnings, d.tellRestored(ctx, t, c)...)
		}
	}
	if err != nil {
		d.events.Publish(events.Event{Kind: events.Failed, Op: "restore", Target: ref.Key(), Checkpoint: c.ID, Name: c.Name, Err: err.Error()})
		return nil, fmt.Errorf("restore %s: %w", c.Name, err)
	}
	d.log.Info("restored", "checkpoint", c.ID, "target", t.Key(), "pid", t.PID)
	d.persistRestored(ctx, t.Key())
	d.events.Publish(events.Event{Kind: events.Restored, Target: t.Key(), Checkpoint: c.ID, Name: c.Name,
		Duration: time.Since(start), Bytes: c.Size()})
	s := d.status(t)
	s.Warnings = append(droppedWarnings(c), warnings...)
	return s, nil
}

// restoreTarget decides what the restored tree will be known as. A host
// process that was pid 1 of its own PID namespace needs none of the host's
// PIDs, so a copy of it under a name is a workload (dir holds its images;
// empty when they have not arrived yet).
func (d *Daemon) restoreTarget(c *store.Checkpoint, name, dir string) (store.TargetRef, error) {
	ref := c.Target
	switch ref.Kind {
	case store.KindContainer:
		return d.containerRestoreRef(c, name)
	case store.KindProcess:
		if name != "" && dir != "" {
			if own, err := ownPIDNamespace(dir, ref.PID); err != nil || own {
				return store.TargetRef{Kind: store.KindWorkload, Name: name, Command: ref.Command, Owner: ref.Owner}, errors.Join(err, store.ValidateName(name))
			}
		}
		if name != "" {
			return ref, fmt.Errorf("checkpoint %s is of host process %d, which restores into its original PIDs and cannot be copied under a new name; start workloads with 'ckptctl run' to restore copies: %w",
				c.Name, ref.PID, errdefs.ErrInvalidArgument)
		}
		return ref, nil
	}
	if name != "" {
		if err := store.ValidateName(name); err != nil {
			return ref, err
		}
		ref.Name = name
	}
	return ref, nil
}

// restoreHow is how a migration restores: stopped (fenced), or lazily
// with its memory fetched from the source.
type restoreHow struct {
	Stopped  bool
	TCPClose bool           // restore established connections closed
	Publish  []network.Port // its ports on these host ports (nil: its own)
	// Keep is a network it goes back into, kept while it slept; its
	// ScaleToZero is recorded with it.
	Keep        *network.Attachment
	ScaleToZero *store.ScaleToZero
	warnings    []string      // set by restore: what it could not give back as saved
	restarts    int           // a restart's count, recorded with it
	launch      *store.Launch // how it was run, for its next restart
	LazyPages   *os.File      // a socket to the source's page server
	LazyLog     string
	lazy        *criu.LazyPages // set by restore: the daemon filling memory
}

// restore brings checkpoint c, whose images are in imagesDir, back as ref.
// The tree runs only once verified passes.
func (d *Daemon) restore(ctx context.Context, c *store.Checkpoint, ref store.TargetRef, imagesDir string, verified func() error, how *restoreHow) (_ *store.Target, err error) {
	inherit := map[string]*os.File{}
	logPath := ""
	if ref.Kind == store.KindWorkload {
		if logPath, err = d.prepareWorkload(ctx, ref.Name, how.Keep != nil); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		ref.LogPath = logPath
		if c.Target.Terminal != nil {
			slave, err := d.restoreTerminal(c, &ref, logPath)
			if err != nil {
				return nil, err
			}
			defer slave.Close()
			inherit[c.Target.Terminal.Key] = slave
		} else if c.Target.LogPath != "" {
			// The restored tree writes to its own log, whatever size the old one has now.
			inherit[restorer.FileKey(c.Target.LogPath)] = f
		}
	} else if err := hostPIDsFree(ctx, imagesDir, c.Target.PID); err != nil {
		return nil, err
	}
	// Before the files check: a program may hold its cgroup's files open
	// (Go reads its CPU quota there), which a restore reopens.
	roots, err := d.limitRestore(c, ref)
	if err != nil {
		return nil, err
	}
	if err := filesPresent(imagesDir, c); err != nil {
		return nil, err
	}
	// Wired while CRIU restores where the tree needs no address of it.
	nr, err := d.restoreNetwork(ctx, c, ref, how, wireBeside(c, how, imagesDir))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			nr.undo()
		}
	}()
	if nr.ns != nil {
		defer nr.ns.Close()
		inherit[network.CRIUKey] = nr.ns
		if c.Options.TCPEstablished {
			defer d.releaseHold(ref, nr.path) // held since it was made
		}
	}
	var launch criu.Launcher
	if c.Options.ShellJob && c.Target.Terminal == nil {
		if launch, err = d.shellJobTerminal(&ref, imagesDir, logPath); err != nil {
			return nil, err
		}
	}

	work, err := d.store.NewRestoreWork(c.ID)
	if err != nil {
		return nil, err
	}
	defer d.closeWork(work, &err)
	t := &store.Target{TargetRef: ref, RestoredFrom: c.ID, ScaleToZero: how.ScaleToZero, Restarts: how.restarts, Launch: how.launch}
	if how.LazyPages != nil {
		t.Filling = "its memory is still arriving by post-copy"
	}
	if how.Stopped {
		// Recorded stopped and in doubt from the start: a ckptd that dies
		// before the source's word leaves it marked, not forgotten.
		t.InDoubt = "restored stopped for a migration; the source has not yet confirmed that its copy is gone"
	}
	ropts := restorerOptions(c, how)
	for ctrl, path := range roots {
		if ropts.CgroupRoots == nil {
			ropts.CgroupRoots = map[string]string{}
		}
		ropts.CgroupRoots[ctrl] = path
	}
	res, err := d.restorer.Restore(ctx, restorer.Request{
		ImagesDir:   imagesDir,
		WorkDir:     work.Path,
		Options:     ropts,
		Inherit:     inherit,
		MemoryBytes: c.Size() + c.SharedBytes(),
		Launch:      launch,
		LazyPages:   how.LazyPages,
		LazyLog:     how.LazyLog,
		BeforeResume: func(pid int) error {
			// Track the root before it can run (and die) unnoticed, and
			// record it before it runs: a ckptd killed from here on must
			// find it at its next start, not leave it running unknown.
			if launch == nil { // else CRIU's child, until CRIU exits (below)
				if err := d.sup.Adopt(pid); err != nil {
					return err
				}
			}
			if err := verified(); err != nil {
				return err
			}
			a, werr := nr.wait()
			if werr != nil {
				return werr
			}
			t.Network = a
			t.PID, t.Created = pid, time.Now().UTC()
			if st, err := proc.ReadStat(pid); err == nil {
				t.StartTime = st.StartTime
			}
			return d.store.PutTarget(ctx, t)
		},
	})
	if err != nil {
		// A killed CRIU can leave a half-restored tree among our children,
		// or one it had already resumed.
		d.sup.EndStrays()
		root := res.PID
		if root == 0 && ref.Kind == store.KindProcess {
			root = c.Target.PID // restored into its own PIDs, with no namespace to name it
		}
		d.endRestored(root)
		if verr := verified(); verr != nil {
			err = verr // the damage explains the failure better than CRIU does
		}
		return nil, err
	}
	how.lazy = res.Lazy
	if nr.warning != "" {
		how.warnings = append(how.warnings, nr.warning)
	}
	if launch != nil {
		// CRIU has exited: the root is ours now, ckptd being the subreaper
		// above the session's holder.
		if err := d.sup.Adopt(res.PID); err != nil {
			d.log.Error("track a restored shell job", "pid", res.PID, "err", err)
		}
	}
	return t, nil
}

// endRestored kills the tree of a failed restore whose root CRIU had
// created (pid 0: it never got that far). The root is ours (restores make
// it ckptd's child), so a PID that is not our child is somebody else's.
func (d *Daemon) endRestored(pid int) {
	if st, err := proc.ReadStat(pid); pid <= 0 || err != nil || st.PPID != os.Getpid() {
		return
	}
	for _, p := range proc.Tree(pid) {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			d.log.Error("end a failed restore's tree", "pid", p, "err", err)
		}
	}
	d.log.Warn("ended the tree of a failed restore", "pid", pid)
}

// verifyAsync checks c's files in the background; the function it returns
// waits for the verdict.
func (d *Daemon) verifyAsync(ctx context.Context, c *store.Checkpoint) func() error {
	verified := make(chan error, 1)
	go func() { verified <- d.store.VerifyBeside(ctx, c) }()
	return sync.OnceValue(func() error { return <-verified })
}

// closeWork ends a CRIU work dir: it is kept, for its log, only when the
// work failed (*err set).
func (d *Daemon) closeWork(w *store.WorkDir, err *error) {
	if cerr := w.Close(*err != nil); cerr != nil {
		d.log.Warn("work dir", "dir", w.Path, "err", cerr)
	}
}

// zombieWait bounds how long a restore waits for a zombie holding one of
// its PIDs to be reaped (pid 1 may reap orphans late).
const zombieWait = 10 * time.Second

// ownPIDNamespace reports whether the checkpointed tree lived in a PID
// namespace of its own: its images then name the root by its PID in that
// namespace, not by the host PID ckptd checkpointed it by, and CRIU
// recreates the namespace, needing no host PID at all.
func ownPIDNamespace(dir string, hostPID int) (bool, error) {
	pids, err := images.PIDs(dir)
	return err == nil && inOwnPIDNamespace(pids, hostPID), err
}

// inOwnPIDNamespace: the images name the root (first) by another PID than
// the host PID it was checkpointed by.
func inOwnPIDNamespace(pids []int, hostPID int) bool {
	return len(pids) > 0 && pids[0] != hostPID
}

// hostPIDsFree refuses to restore a tree that lived in the host's PID
// namespace over live processes: CRIU would fail with "Can't fork for N:
// File exists". A zombie holding a PID gets zombieWait to be reaped.
func hostPIDsFree(ctx context.Context, dir string, hostPID int) error {
	pids, err := images.PIDs(dir)
	if err != nil || inOwnPIDNamespace(pids, hostPID) {
		return err
	}
	deadline := time.Now().Add(zombieWait)
	for _, pid := range pids {
		for {
			st, err := proc.ReadStat(pid)
			if err != nil {
				break // free
			}
			if st.State != 'Z' {
				return fmt.Errorf("pid %d is in use on this host (%s), and a checkpoint of a host process restores into its original PIDs; stop that process first, or use 'ckptctl run' workloads, which restore as copies: %w",
					pid, st.Comm, errdefs.ErrFailedPrecondition)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d, which the restore needs, is still held by a zombie that its parent (pid %d) has not reaped after %s; try again once it is gone: %w",
					pid, st.PPID, zombieWait, errdefs.ErrUnavailable)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func restorerOptions(c *store.Checkpoint, how *restoreHow) restorer.Options {
	o := c.Options
	ro := restorer.Options{TCPEstablished: o.TCPEstablished, TCPClose: how.TCPClose, FileLocks: o.FileLocks, ExtUnixSk: o.ExtUnixSk,
		ShellJob: o.ShellJob, ConfigFile: o.CRIUConfig, LeaveStopped: how.Stopped}
	if c.Group != "" {
		// Not into the freezer cgroup that held it for its group, which
		// CRIU would make again, frozen.
		ro.CgroupRoots = map[string]string{"freezer": "/"}
	}
	return ro
}
