package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
)

// plain is a container spec as containerd's defaults make it.
func plain() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"/bin/sh"}, Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_CHOWN", "CAP_KILL"},
		}},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/dev", Type: "tmpfs", Source: "tmpfs"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "network"}},
			Resources:  &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		},
		Annotations: map[string]string{"io.container.manager": "libpod"},
	}
}

func TestSpec(t *testing.T) {
	major := int64(1)
	for _, tc := range []struct {
		name    string
		edit    func(*specs.Spec)
		policy  Policy
		refused string // the setting named, or "" when it passes
		dropped []string
	}{
		{name: "plain", edit: func(*specs.Spec) {}},
		{name: "hooks", edit: func(s *specs.Spec) {
			h := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "touch /marker"}}
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{h}, CreateRuntime: []specs.Hook{h}, Poststart: []specs.Hook{h}}
		}, dropped: []string{"its 3 OCI hooks (commands run on the host)"}},
		{name: "runtime annotations", edit: func(s *specs.Spec) {
			s.Annotations["org.criu.config"] = "/tmp/evil.conf"
			s.Annotations["run.oci.handler"] = "krun"
		}, dropped: []string{"its annotation org.criu.config", "its annotation run.oci.handler"}},
		{name: "host bind", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "bind", Source: "/"})
		}, refused: "trust_host_paths"},
		{name: "rbind by option", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc2", Source: "/etc", Options: []string{"rbind", "ro"}})
		}, refused: "trust_host_paths"},
		{name: "allowed bind", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data/app"})
		}, policy: Policy{HostPaths: []string{"/srv/data"}}},
		{name: "bind escaping an allowed path", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data/../../etc"})
		}, policy: Policy{HostPaths: []string{"/srv/data"}}, refused: "trust_host_paths"},
		{name: "prefix that is not a parent", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/database"})
		}, policy: Policy{HostPaths: []string{"/srv/data"}}, refused: "trust_host_paths"},
		{name: "engine-made bind", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: "ckptd-local:hosts"})
		}},
		{name: "host network", edit: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:4] }, refused: "trust_host_namespaces"},
		{name: "joined pid namespace", edit: func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }, refused: "trust_host_namespaces"},
		{name: "host namespaces allowed", edit: func(s *specs.Spec) { s.Linux.Namespaces = nil }, policy: Policy{HostNamespaces: true}},
		{name: "privileged", edit: func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}, refused: "trust_capabilities"},
		{name: "device node", edit: func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8}}
		}, refused: "trust_devices"},
		{name: "every device", edit: func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
		}, refused: "trust_devices"},
		{name: "one device", edit: func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rwm"})
		}},
		{name: "apparmor unconfined", edit: func(s *specs.Spec) { s.Process.ApparmorProfile = "unconfined" }, refused: "trust_unconfined"},
		{name: "seccomp allowing all", edit: func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		}, refused: "trust_unconfined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := plain()
			tc.edit(spec)
			path := filepath.Join(t.TempDir(), "config.json")
			b, _ := json.Marshal(spec)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			dropped, err := Spec(path, tc.policy)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) || !errdefs.IsPermissionDenied(err) {
					t.Fatalf("err %v, want a refusal naming %s", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(dropped, "|") != strings.Join(tc.dropped, "|") {
				t.Errorf("dropped %q, want %q", dropped, tc.dropped)
			}
			after, err := readSpec(path)
			if err != nil {
				t.Fatal(err)
			}
			if after.Hooks != nil || after.Annotations["org.criu.config"] != "" || after.Annotations["io.container.manager"] != "libpod" {
				t.Errorf("spec after: hooks %v, annotations %v", after.Hooks, after.Annotations)
			}
		})
	}
}

func TestSpecRefusesOversizedAndMalformed(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"x":"`+strings.Repeat("a", MaxSpecBytes)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Spec(big, Policy{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("oversized spec: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"process": 1}`), 0o600)
	if _, err := Spec(bad, Policy{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed spec: %v", err)
	}
}

func FuzzSpec(f *testing.F) {
	b, _ := json.Marshal(plain())
	f.Add(b)
	f.Add([]byte(`{"process":{},"linux":{"namespaces":[{"type":"network","path":"/x"}]},"mounts":[{"type":"bind","source":"/"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Spec(path, Policy{}); err != nil {
			return
		}
		// What passes, passes again unchanged, and runs nothing on the host.
		after, err := readSpec(path)
		if err != nil {
			t.Fatalf("a spec that passed no longer reads: %v", err)
		}
		if after.Hooks != nil {
			t.Fatal("hooks survived")
		}
		if dropped, err := Spec(path, Policy{}); err != nil || len(dropped) > 0 {
			t.Fatalf("second pass: %v, %v", dropped, err)
		}
	})
}
