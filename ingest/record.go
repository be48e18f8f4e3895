// Package ingest is the one boundary through which a checkpoint from
// outside (an archive, a registry, another engine's export, a peer's
// migration) enters the store. Nothing of the outside record is copied
// whole: Record builds a fresh one from an allow-list of its fields, and
// Spec strips a container's OCI spec of what would run on the host or
// open it up, or refuses it by the setting of the host's Policy that
// would allow it. What is dropped is said, and a restore repeats it.
package ingest

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"

	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/notify"
	"github.com/ckptd/ckptd/store"
)

// Host is what this host runs containers with; an outside checkpoint's
// own choices are replaced by these.
type Host struct {
	Runtime     string // containerd's runtime, e.g. io.containerd.runc.v2
	Snapshotter string // containerd's snapshotter, e.g. overlayfs
	// PublishPorts keeps the host ports a workload published: a
	// migration's move with it; an archive's stay behind (which of this
	// host's ports forward to a workload is this host's choice).
	PublishPorts bool
}

// DefaultHost is containerd's default runtime and snapshotter.
var DefaultHost = Host{Runtime: "io.containerd.runc.v2", Snapshotter: "overlayfs"}

// terminalKey is CRIU's name of an external terminal: tty[rdev:dev].
var terminalKey = regexp.MustCompile(`^tty\[[0-9a-f]{1,16}:[0-9a-f]{1,16}\]$`)

// Record is the record an outside checkpoint src enters this store with,
// and what of src was dropped. The caller sets what this host decides:
// the ID, name, parent and where it came from (Imported, Migration).
func Record(src *store.Checkpoint, h Host) (*store.Checkpoint, []string) {
	var dropped []string
	c := &store.Checkpoint{
		Created:     src.Created,
		CRIUVersion: src.CRIUVersion, Kernel: src.Kernel, Host: src.Host, CPUModel: src.CPUModel,
		Target: targetRef(src.Target, &dropped),
		Options: store.Options{
			LeaveRunning: src.Options.LeaveRunning, TCPEstablished: src.Options.TCPEstablished,
			FileLocks: src.Options.FileLocks, ExtUnixSk: src.Options.ExtUnixSk, ShellJob: src.Options.ShellJob,
			LinkRemap: src.Options.LinkRemap, GhostLimit: src.Options.GhostLimit,
		},
		Files: maps.Clone(src.Files),
	}
	if src.Options.CRIUConfig != "" {
		dropped = append(dropped, fmt.Sprintf("its CRIU configuration file %q (a configuration can run commands)", src.Options.CRIUConfig))
	}
	if s := src.Stats; s != nil {
		stats := *s // numbers only
		c.Stats = &stats
	}
	if src.Container != nil {
		c.Container = container(src.Container, h, &dropped)
	}
	if src.Network != nil {
		c.Network = networkSpec(*src.Network, h, &dropped)
	}
	if n := len(src.AppState); n > notify.MaxPayload {
		dropped = append(dropped, fmt.Sprintf("an application state of %d bytes (at most %d)", n, notify.MaxPayload))
	} else if n > 0 {
		c.AppState = bytes.Clone(src.AppState) // opaque: handed back to the workload only
	}
	return c, dropped
}

// networkSpec keeps a workload's own network: its mode, the address it
// asks for (host-local gives it only if free and on this host's subnet)
// and, for a migration, its published ports.
func networkSpec(src network.Spec, h Host, dropped *[]string) *network.Spec {
	s := &network.Spec{Mode: network.Private}
	if src.Mode == network.None {
		s.Mode = network.None
	} else if src.Mode != network.Private {
		*dropped = append(*dropped, fmt.Sprintf("a network mode %q that is not private or none", src.Mode))
	}
	if ip := net.ParseIP(src.IP).To4(); ip != nil && s.Mode == network.Private {
		s.IP = ip.String()
		if mac, err := net.ParseMAC(src.MAC); err == nil && len(mac) == 6 {
			s.MAC = mac.String()
		}
	}
	if len(src.Ports) > 0 && (!h.PublishPorts || s.Mode != network.Private) {
		*dropped = append(*dropped, fmt.Sprintf("%d published port(s): publish them with restore -p", len(src.Ports)))
		return s
	}
	for _, p := range src.Ports {
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Protocol != "tcp" && p.Protocol != "udp") {
			*dropped = append(*dropped, fmt.Sprintf("a published port %d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol))
			continue
		}
		s.Ports = append(s.Ports, network.Port{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	return s
}

func targetRef(t store.TargetRef, dropped *[]string) store.TargetRef {
	ref := store.TargetRef{Kind: t.Kind, Name: t.Name, PID: t.PID, Command: append([]string(nil), t.Command...)}
	// The log is only a key: a restore hands a fresh log in place of the
	// file the images name, which CRIU would otherwise reopen by itself.
	if t.LogPath != "" && filepath.IsAbs(t.LogPath) && filepath.Clean(t.LogPath) == t.LogPath {
		ref.LogPath = t.LogPath
	}
	if t.Terminal != nil {
		term := &store.Terminal{Rows: t.Terminal.Rows, Cols: t.Terminal.Cols}
		if t.Terminal.Key != "" {
			if terminalKey.MatchString(t.Terminal.Key) {
				term.Key = t.Terminal.Key
			} else {
				*dropped = append(*dropped, fmt.Sprintf("a terminal key %q that is not CRIU's tty[rdev:dev]", t.Terminal.Key))
			}
		}
		ref.Terminal = term
	}
	if len(t.Hooks) > 0 {
		*dropped = append(*dropped, fmt.Sprintf("%d command hook(s) (commands from outside never run here)", len(t.Hooks)))
	}
	if notify.ValidName(t.Notify) {
		ref.Notify = t.Notify
	} else if t.Notify != "" {
		*dropped = append(*dropped, fmt.Sprintf("a notification socket %q that is not one ckptd names", t.Notify))
	}
	return ref
}

// container keeps what names the container and its image; how it runs
// (runtime, snapshotter) is this host's, and its labels stay behind.
func container(src *store.ContainerInfo, h Host, dropped *[]string) *store.ContainerInfo {
	ci := &store.ContainerInfo{
		Namespace: src.Namespace, ID: src.ID, Image: src.Image, ImageDigest: src.ImageDigest, ImageID: src.ImageID,
		Engine: src.Engine, RootfsMediaType: src.RootfsMediaType,
		Runtime: h.Runtime, Snapshotter: h.Snapshotter,
	}
	if src.Runtime != "" && src.Runtime != h.Runtime {
		*dropped = append(*dropped, fmt.Sprintf("its runtime %q (restored with this host's %s)", src.Runtime, h.Runtime))
	}
	if src.Snapshotter != "" && src.Snapshotter != h.Snapshotter {
		*dropped = append(*dropped, fmt.Sprintf("its snapshotter %q (restored with this host's %s)", src.Snapshotter, h.Snapshotter))
	}
	if len(src.Labels) > 0 {
		*dropped = append(*dropped, fmt.Sprintf("its %d container labels", len(src.Labels)))
	}
	return ci
}
