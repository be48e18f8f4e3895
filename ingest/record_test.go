package ingest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

func TestRecordKeepsOnlyTheAllowList(t *testing.T) {
	src := &store.Checkpoint{
		FormatVersion: 2, ID: "0123456789abcdef", Name: "x", Parent: "fedcba9876543210", Created: time.Unix(100, 0).UTC(),
		CRIUVersion: "4.2.1", Host: "elsewhere", State: store.StateSealed, BootID: "b", Scheduled: true,
		Target: store.TargetRef{Kind: store.KindWorkload, Name: "w", Command: []string{"sh"}, LogPath: "/var/lib/ckptd/workloads/w/../../../../etc/shadow",
			Terminal: &store.Terminal{Key: "tty[88:1a]", Rows: 24, Cols: 80}},
		Options: store.Options{LeaveRunning: true, TCPEstablished: true, CRIUConfig: "/tmp/action-script.conf"},
		Container: &store.ContainerInfo{Namespace: "ns", ID: "web", Image: "img", ImageDigest: "sha256:ab",
			Runtime: "io.containerd.evil.v1", Snapshotter: "devmapper", Labels: map[string]string{"a": "b"}},
		Files:    map[string]store.FileSum{"pages-1.img": {Size: 4096, BLAKE3: "aa"}},
		Imported: &store.Import{Source: "evil"}, Migration: &store.Migration{Peer: "p"},
		Incremental: &store.Incremental{Parent: "fedcba9876543210"},
	}
	c, dropped := Record(src, DefaultHost)
	switch {
	case c.ID != "" || c.Name != "" || c.Parent != "" || c.State != "" || c.BootID != "" || c.Scheduled:
		t.Errorf("identity or state crossed the boundary: %+v", c)
	case c.Imported != nil || c.Migration != nil || c.Incremental != nil:
		t.Errorf("provenance crossed the boundary: %+v", c)
	case c.Options.CRIUConfig != "" || !c.Options.LeaveRunning || !c.Options.TCPEstablished:
		t.Errorf("options %+v", c.Options)
	case c.Target.LogPath != "" || c.Target.Terminal == nil || c.Target.Terminal.Key != "tty[88:1a]":
		t.Errorf("target %+v", c.Target)
	case c.Container.Runtime != DefaultHost.Runtime || c.Container.Snapshotter != DefaultHost.Snapshotter || c.Container.Labels != nil:
		t.Errorf("container %+v", c.Container)
	case c.Container.Image != "img" || c.Files["pages-1.img"].Size != 4096:
		t.Errorf("what names the checkpoint was lost: %+v", c)
	}
	src.Files["pages-1.img"] = store.FileSum{Size: 1}
	if c.Files["pages-1.img"].Size != 4096 {
		t.Error("the record shares the outside one's files map")
	}
	got := strings.Join(dropped, "; ")
	for _, want := range []string{"CRIU configuration", "io.containerd.evil.v1", "devmapper", "1 container labels"} {
		if !strings.Contains(got, want) {
			t.Errorf("dropped %q lacks %q", got, want)
		}
	}
	src.Target.Notify, src.AppState = "@ckptd-notify", []byte("offset=9")
	if c, _ := Record(src, DefaultHost); c.Target.Notify != "@ckptd-notify" || string(c.AppState) != "offset=9" {
		t.Errorf("notification socket %q, app state %q", c.Target.Notify, c.AppState)
	}
	src.Target.Notify, src.AppState = "/run/evil.sock", make([]byte, 1<<20)
	if c, dropped := Record(src, DefaultHost); c.Target.Notify != "" || c.AppState != nil || !strings.Contains(strings.Join(dropped, ";"), "notification socket") || !strings.Contains(strings.Join(dropped, ";"), "application state") {
		t.Errorf("a bad notification socket and a large state: %q, %d bytes, %v", c.Target.Notify, len(c.AppState), dropped)
	}
	src.Target.Terminal.Key = "tty[../../x]"
	if c, dropped := Record(src, DefaultHost); c.Target.Terminal.Key != "" || !strings.Contains(strings.Join(dropped, ";"), "terminal key") {
		t.Errorf("a bad terminal key: %+v, %v", c.Target.Terminal, dropped)
	}
}

func TestRecordNetwork(t *testing.T) {
	port := network.Port{HostPort: 22, ContainerPort: 80, Protocol: "tcp"}
	for _, tc := range []struct {
		name    string
		src     network.Spec
		publish bool
		want    network.Spec
		dropped string
	}{
		{"archive", network.Spec{Mode: "private", IP: "10.77.0.9", Ports: []network.Port{port}}, false,
			network.Spec{Mode: "private", IP: "10.77.0.9"}, "1 published port(s)"},
		{"migration", network.Spec{Mode: "private", IP: "10.77.0.9", Ports: []network.Port{port}}, true,
			network.Spec{Mode: "private", IP: "10.77.0.9", Ports: []network.Port{port}}, ""},
		{"bad port", network.Spec{Mode: "private", Ports: []network.Port{{HostPort: 1, ContainerPort: 2, Protocol: "sctp"}}}, true,
			network.Spec{Mode: "private"}, "published port 1:2/sctp"},
		{"bad address", network.Spec{Mode: "private", IP: "10.77.0.9/8; rm -rf"}, false, network.Spec{Mode: "private"}, ""},
		{"none", network.Spec{Mode: "none", IP: "10.77.0.9"}, true, network.Spec{Mode: "none"}, ""},
		{"host", network.Spec{Mode: "host"}, true, network.Spec{Mode: "private"}, `network mode "host"`},
	} {
		src := &store.Checkpoint{Target: store.TargetRef{Kind: store.KindWorkload, Name: "w"}, Network: &tc.src}
		c, dropped := Record(src, Host{PublishPorts: tc.publish})
		if !reflect.DeepEqual(*c.Network, tc.want) {
			t.Errorf("%s: network %+v, want %+v", tc.name, *c.Network, tc.want)
		}
		if got := strings.Join(dropped, "; "); (tc.dropped == "") != (got == "") || !strings.Contains(got, tc.dropped) {
			t.Errorf("%s: dropped %q, want %q", tc.name, got, tc.dropped)
		}
	}
	if c, _ := Record(&store.Checkpoint{}, DefaultHost); c.Network != nil {
		t.Errorf("a record with no network got %+v", c.Network)
	}
}
