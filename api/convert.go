package api

import (
	"cmp"
	"fmt"
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

func refToAPI(r store.TargetRef) *apiv1.TargetRef {
	return &apiv1.TargetRef{Kind: r.Kind, Name: r.Name, Pid: int32(r.PID), Command: r.Command, LogPath: r.LogPath, Owner: r.Owner}
}

func targetToAPI(t *daemon.TargetStatus) *apiv1.Target {
	out := &apiv1.Target{
		Ref: refToAPI(t.TargetRef), StartTime: t.StartTime, RestoredFrom: t.RestoredFrom,
		CreatedUnixNano: unixNano(t.Created), Running: t.Running, Exit: t.Exit,
		Image: t.Image, Warnings: t.Warnings, InDoubt: t.InDoubt,
		Schedule: scheduleToAPI(t.Schedule), LastCheckpoint: t.LastCheckpoint, LastCheckpointUnixNano: unixNano(t.LastCheckpointAt),
		Terminal: t.Terminal != nil, Attached: int32(t.Attached), TerminalError: t.TerminalError,
	}
	if p := t.Persisted; p != nil {
		out.Persist, out.PersistCheckpoint, out.PersistError, out.PersistGroup = true, p.Checkpoint, p.Error, p.Group
	}
	if n := t.Network; n != nil {
		out.Network, out.Ip = network.Private, n.IP
		if n.LoopbackOnly {
			out.Network = network.None
		}
		ports := n.Ports
		if z := t.ScaleToZero; z != nil {
			ports = z.Ports // ckptd holds them
			out.ScalesToZero, out.Hibernated, out.WakeError, out.IdleAfterNs = true, t.Hibernated(), z.WakeError, int64(z.IdleAfter)
		}
		for _, p := range ports {
			out.Ports = append(out.Ports, fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol))
		}
	}
	return out
}

// unixNano is 0 for an unknown time, which clients show as "-".
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func optionsFromAPI(o *apiv1.Options) store.Options {
	return store.Options{
		LeaveRunning: o.GetLeaveRunning(), TCPEstablished: o.GetTcpEstablished(),
		FileLocks: o.GetFileLocks(), ExtUnixSk: o.GetExtUnixSk(), ShellJob: o.GetShellJob(),
		LinkRemap: o.GetLinkRemap(), GhostLimit: o.GetGhostLimit(), CRIUConfig: o.GetCriuConfig(),
	}
}

func checkpointToAPI(c *store.Checkpoint) *apiv1.Checkpoint {
	if c == nil {
		return nil
	}
	out := &apiv1.Checkpoint{
		FormatVersion: int32(c.FormatVersion), Id: c.ID, Name: c.Name, Target: refToAPI(c.Target),
		Parent: c.Parent, CreatedUnixNano: c.Created.UnixNano(), CriuVersion: c.CRIUVersion,
		Kernel: c.Kernel, Host: c.Host, CpuModel: c.CPUModel, Size: c.Size(),
		State: cmp.Or(c.State, store.StateSealed), SealedUnixNano: unixNano(c.Sealed), Scheduled: c.Scheduled,
		Options: &apiv1.Options{
			LeaveRunning: c.Options.LeaveRunning, TcpEstablished: c.Options.TCPEstablished,
			FileLocks: c.Options.FileLocks, ExtUnixSk: c.Options.ExtUnixSk, ShellJob: c.Options.ShellJob,
			LinkRemap: c.Options.LinkRemap, GhostLimit: c.Options.GhostLimit, CriuConfig: c.Options.CRIUConfig,
		},
		Files:    make(map[string]*apiv1.FileSum, len(c.Files)),
		AppState: c.AppState,
	}
	for name, f := range c.Files {
		out.Files[name] = &apiv1.FileSum{Size: f.Size, Sha256: f.SHA256, Blake3: f.BLAKE3}
	}
	if ci := c.Container; ci != nil {
		out.Container = &apiv1.ContainerInfo{
			Namespace: ci.Namespace, Id: ci.ID, Image: ci.Image, ImageDigest: ci.ImageDigest,
			Snapshotter: ci.Snapshotter, Runtime: ci.Runtime, Labels: ci.Labels, RootfsMediaType: ci.RootfsMediaType,
			ImageId: ci.ImageID, Engine: ci.Engine,
		}
	}
	out.Dropped = c.Dropped
	if u := c.RunsAs; u != nil {
		out.RunsAs = u.String()
	}
	if im := c.Imported; im != nil {
		out.Imported = &apiv1.Import{Source: im.Source, OriginalId: im.OriginalID, TimeUnixNano: unixNano(im.Time)}
	}
	if inc := c.Incremental; inc != nil {
		out.Incremental = &apiv1.Incremental{Parent: inc.Parent, SharedBytes: c.SharedBytes()}
	}
	if m := c.Migration; m != nil {
		out.Migration = &apiv1.Migration{Peer: m.Peer, ReceivedUnixNano: unixNano(m.Received)}
	}
	out.Stats = statsToAPI(c.Stats)
	out.Group = c.Group
	return out
}

func statsToAPI(s *store.DumpStats) *apiv1.DumpStats {
	if s == nil {
		return nil
	}
	return &apiv1.DumpStats{
		FreezingTime: s.FreezingTime, FrozenTime: s.FrozenTime, MemdumpTime: s.MemdumpTime,
		MemwriteTime: s.MemwriteTime, PagesScanned: s.PagesScanned, PagesWritten: s.PagesWritten,
		PagesSkippedParent: s.PagesSkippedParent, CommitSync: s.CommitSync,
	}
}

func processToAPI(p images.Process) *apiv1.Process {
	out := &apiv1.Process{Pid: p.PID, Ppid: p.PPID, Comm: p.Comm, Command: p.Command, MemoryBytes: p.MemoryBytes}
	for _, f := range p.Files {
		out.Files = append(out.Files, &apiv1.File{Fd: f.FD, Type: f.Type, Path: f.Path})
	}
	for _, s := range p.Sockets {
		out.Sockets = append(out.Sockets, &apiv1.Socket{Fd: s.FD, Type: s.Type, State: s.State, Src: s.Src, Dst: s.Dst})
	}
	return out
}
