package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// containerRef turns ctr:NAMESPACE/ID (or ctr:ID) into a target reference.
func (d *Daemon) containerRef(target string) (store.TargetRef, error) {
	r, err := container.ParseRef(target, d.defaultNS)
	if err != nil {
		return store.TargetRef{}, err
	}
	return store.TargetRef{Kind: store.KindContainer, Name: r.Name()}, nil
}

// liveContainer returns the record of a running container, continuing its
// lineage when it is the same incarnation ckptd saw before; a new one is
// recorded only with its first checkpoint (recordTarget).
func (d *Daemon) liveContainer(ctx context.Context, ref store.TargetRef) (*store.Target, error) {
	r, err := container.RefFromName(ref.Name)
	if err != nil {
		return nil, err
	}
	info, err := d.ctrs.Get(ctx, r)
	if err != nil {
		return nil, err
	}
	if !info.Running() {
		status := info.Status
		if status == "" {
			status = "not started"
		}
		return nil, fmt.Errorf("container %s is %s, not running: %w", r, status, errdefs.ErrFailedPrecondition)
	}
	if t, err := d.store.GetTarget(ctx, ref.Key()); err == nil && t.PID == info.PID && d.alive(t) {
		return t, nil
	} else if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	ref.PID = info.PID
	ref.Command, _ = proc.Cmdline(info.PID)
	t := &store.Target{TargetRef: ref, Created: time.Now().UTC()}
	if st, err := proc.ReadStat(info.PID); err == nil {
		t.StartTime = st.StartTime
	}
	return t, nil
}

// checkpointContainer dumps a container through containerd into a staged
// checkpoint; the container's spec and writable layer go beside the images.
func (d *Daemon) checkpointContainer(ctx context.Context, c *store.Checkpoint, t *store.Target) error {
	r, err := container.RefFromName(c.Target.Name)
	if err != nil {
		return err
	}
	return d.capture(ctx, c, t, func(dir, workDir string, commit func() error) (*store.DumpStats, error) {
		res, err := d.containers.Checkpoint(ctx, container.CheckpointRequest{
			Ref: r, ImagesDir: dir, WorkDir: workDir,
			SpecPath:     filepath.Join(dir, store.ContainerSpecFile),
			RootfsPath:   filepath.Join(dir, store.RootfsDiffFile),
			PausedMarker: filepath.Join(workDir, store.PausedFile),
			Options: container.Options{
				LeaveRunning: c.Options.LeaveRunning, TCPEstablished: c.Options.TCPEstablished,
				FileLocks: c.Options.FileLocks, ExtUnixSk: c.Options.ExtUnixSk, ShellJob: c.Options.ShellJob,
			},
			Commit: func(src container.Source) error {
				c.Container = containerRecord(r, src)
				return commit()
			},
		})
		if err != nil {
			return nil, err
		}
		return convertStats(res.Stats), nil
	})
}

// containerRestoreRef is what a container checkpoint restores as: the
// original container, or with name (ID or ctr:NAMESPACE/ID) a new one.
func (d *Daemon) containerRestoreRef(c *store.Checkpoint, name string) (store.TargetRef, error) {
	ref := c.Target
	orig, err := container.RefFromName(ref.Name)
	if err != nil || name == "" {
		return ref, err
	}
	var r container.Ref
	if container.IsRef(name) {
		r, err = container.ParseRef(name, orig.Namespace)
	} else {
		r, err = container.NewRef(orig.Namespace, name)
	}
	if err != nil {
		return ref, err
	}
	ref.Name = r.Name()
	return ref, nil
}

// restoreContainer recreates a container from checkpoint c as ref.
// containerd prepares the container while verified runs; the task starts
// only once it passed.
// With leaveStopped (a fenced migration) its processes are restored
// stopped, through a CRIU configuration file runc hands to CRIU (the
// org.criu.config annotation), until resumeTree.
func (d *Daemon) restoreContainer(ctx context.Context, c *store.Checkpoint, ref store.TargetRef, verified func() error, leaveStopped bool) (_ *store.Target, _ []string, err error) {
	if c.Container == nil {
		return nil, nil, fmt.Errorf("checkpoint %s lacks its container record: %w", c.Name, errdefs.ErrDataLoss)
	}
	to, err := container.RefFromName(ref.Name)
	if err != nil {
		return nil, nil, err
	}
	from, err := container.RefFromName(c.Target.Name)
	if err != nil {
		return nil, nil, err
	}
	logDir := d.store.Layout().Container(to.Namespace, to.ID)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, nil, err
	}
	work, err := d.store.NewRestoreWork(c.ID)
	if err != nil {
		return nil, nil, err
	}
	defer d.closeWork(work, &err)
	dir := d.store.Dir(c.ID)
	ci := c.Container
	var conf []string
	if leaveStopped {
		conf = append(conf, "leave-stopped")
	}
	if ci.Engine != "" {
		// Another engine's root file system: its root directory's mode
		// may differ from containerd's snapshot of the same image.
		conf = append(conf, "skip-file-rwx-check")
	}
	var criuConfig string
	if len(conf) > 0 {
		criuConfig = filepath.Join(work.Path, "restore.conf")
		if err := os.WriteFile(criuConfig, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
	}
	netA, undoNet, netWarnings, err := d.containerNetwork(ctx, c, ref)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			undoNet()
		}
	}()
	var netNS string
	if netA != nil {
		netNS = netA.NetNS
	}
	res, err := d.containers.Restore(ctx, container.RestoreRequest{
		Ref: to, From: from, ImagesDir: dir, WorkDir: work.Path, MemoryBytes: c.Size() + c.SharedBytes(),
		SpecPath:   filepath.Join(dir, store.ContainerSpecFile),
		RootfsPath: filepath.Join(dir, store.RootfsDiffFile),
		LogPath:    filepath.Join(logDir, LogFile),
		Source: container.Source{
			Image: ci.Image, ImageDigest: ci.ImageDigest, ImageID: ci.ImageID, Snapshotter: ci.Snapshotter,
			Runtime: ci.Runtime, Labels: ci.Labels, RootfsMediaType: ci.RootfsMediaType,
		},
		Verified: verified, CRIUConfig: criuConfig, NetNS: netNS,
	})
	if err != nil {
		if verr := verified(); verr != nil {
			err = verr // the damage explains the failure better
		}
		return nil, nil, err
	}
	ref.PID, ref.LogPath = res.PID, filepath.Join(logDir, LogFile)
	t := &store.Target{TargetRef: ref, RestoredFrom: c.ID, Created: time.Now().UTC(), Network: netA}
	if st, err := proc.ReadStat(res.PID); err == nil {
		t.StartTime = st.StartTime
	}
	if err := d.store.PutTarget(ctx, t); err != nil {
		return nil, nil, fmt.Errorf("restored %s as pid %d, but recording it failed: %w", to, res.PID, err)
	}
	warnings := append(netWarnings, res.Warnings...)
	for _, w := range warnings {
		d.log.Warn("restored container", "container", to.String(), "warning", w)
	}
	return t, warnings, nil
}

// resumePausedContainers thaws containers whose checkpoint was cut short
// by ckptd dying while they were paused: nothing is left frozen.
func (d *Daemon) resumePausedContainers(ctx context.Context) {
	markers, err := filepath.Glob(filepath.Join(d.store.Layout().DumpsDir(), "*", store.PausedFile))
	if err != nil {
		d.log.Error("look for paused containers", "err", err)
		return
	}
	for _, m := range markers {
		ref, err := d.containers.ResumeMarked(ctx, m)
		if err != nil {
			d.log.Error("resume container paused by an interrupted checkpoint", "marker", m, "err", err)
			continue
		}
		d.log.Warn("resumed container paused by an interrupted checkpoint", "container", ref.String())
	}
}

// containerStatuses lists containerd's containers as targets, with what
// ckptd knows of them (which checkpoint they were restored from).
func (d *Daemon) containerStatuses(ctx context.Context, all bool, known map[string]*store.Target) ([]*TargetStatus, error) {
	infos, err := d.ctrs.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []*TargetStatus
	for _, info := range infos {
		if !all && !info.Running() {
			continue
		}
		ref := store.TargetRef{Kind: store.KindContainer, Name: info.Ref.Name(), PID: info.PID}
		s := &TargetStatus{Target: store.Target{TargetRef: ref, Created: info.Created}, Running: info.Running(), Image: info.Image}
		switch {
		case info.Running():
		case info.Status == "":
			s.Exit = "no task"
		default:
			s.Exit = info.Status
		}
		if t := known[ref.Key()]; t != nil && t.PID == info.PID && info.Running() {
			s.Target = *t
		}
		out = append(out, s)
		delete(known, ref.Key())
	}
	return out, nil
}

// containerRecord is what a checkpoint keeps of container r, whose base
// image and runtime are src.
func containerRecord(r container.Ref, src container.Source) *store.ContainerInfo {
	return &store.ContainerInfo{
		Namespace: r.Namespace, ID: r.ID, Image: src.Image, ImageDigest: src.ImageDigest, ImageID: src.ImageID,
		Snapshotter: src.Snapshotter, Runtime: src.Runtime, Labels: src.Labels,
		RootfsMediaType: src.RootfsMediaType,
	}
}
