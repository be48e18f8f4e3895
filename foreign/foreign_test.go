package foreign

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

// podmanSpec is the shape of the spec.dump Podman writes.
func podmanSpec(netnsPath string) specs.Spec {
	return specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: "/var/lib/containers/storage/overlay/abc/merged"},
		Process:     &specs.Process{Args: []string{"sh"}},
		Hooks:       &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/libexec/podman/hook"}}},
		Annotations: map[string]string{"io.container.manager": "libpod"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/containers/storage/x/userdata/hosts"},
			{Destination: "/dev/shm", Type: "bind", Source: "/var/lib/containers/storage/x/userdata/shm"},
			{Destination: "/data", Type: "bind", Source: "/srv/data"},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/libpod_parent/libpod-abc",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: netnsPath}},
		},
	}
}

func stage(t *testing.T, spec *specs.Spec) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "0123456789abcdef")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if spec != nil {
		b, _ := json.Marshal(spec)
		if err := os.WriteFile(filepath.Join(dir, store.ContainerSpecFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestConvert(t *testing.T) {
	podman := `{"id":"50ad684b","name":"pc","rootfsImageID":"0dd6","rootfsImageName":"busybox:latest","runtime":"runc","checkpointedTime":"2026-12-02T09:34:35Z"}`
	crio := `{"id":"7f1e","name":"k8s_app_pod_ns_uid_0","rootfsImageRef":"sha256:9a1b","rootfsImageName":"registry.test/app:1"}`
	plain := podmanSpec("")
	for _, tc := range []struct {
		name, config string
		spec         *specs.Spec
		wantID       string // the container's ID in containerd
		wantImageID  string
		wantNet      bool // a network namespace to make at restore
		wantErr      error
		errText      string
	}{
		{name: "podman", config: podman, spec: &plain, wantID: "pc", wantImageID: "sha256:0dd6"},
		{name: "cri-o", config: crio, spec: &plain, wantID: "k8s_app_pod_ns_uid_0", wantImageID: "sha256:9a1b"},
		{name: "name containerd refuses", config: `{"id":"abc123","name":"bad name!","rootfsImageName":"i"}`, spec: &plain, wantID: "abc123"},
		{name: "no image", config: `{"id":"a","name":"b"}`, spec: &plain, wantErr: errdefs.ErrInvalidArgument, errText: "no image"},
		{name: "not JSON", config: `{`, spec: &plain, wantErr: errdefs.ErrInvalidArgument, errText: "config.dump"},
		{name: "no spec", config: podman, wantErr: errdefs.ErrInvalidArgument, errText: "no spec.dump"},
		{name: "external netns", config: podman, spec: ptr(podmanSpec("/run/netns/netns-1")), wantID: "pc", wantImageID: "sha256:0dd6", wantNet: true},
		{name: "not a Linux spec", config: podman, spec: &specs.Spec{Process: &specs.Process{}}, wantErr: errdefs.ErrInvalidArgument, errText: "not a Linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := stage(t, tc.spec)
			c, err := Convert(dir, []byte(tc.config), nil, "default", "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error %v, want %v containing %q", err, tc.wantErr, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Container.ID != tc.wantID || c.Name != tc.wantID || c.Target.Name != "default/"+tc.wantID || c.Container.ImageID != tc.wantImageID {
				t.Errorf("record %+v %+v", c, c.Container)
			}
			if (c.Network != nil) != tc.wantNet || tc.wantNet && c.Network.Mode != network.Private {
				t.Errorf("network %+v, want one to make: %v", c.Network, tc.wantNet)
			}
			checkRewrittenSpec(t, filepath.Join(dir, store.ContainerSpecFile), tc.wantID)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func checkRewrittenSpec(t *testing.T, path, id string) {
	t.Helper()
	var s specs.Spec
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != "rootfs" || s.Hooks != nil || s.Linux.CgroupsPath != "/default/"+id {
		t.Errorf("spec root %v, hooks %v, cgroup %q", s.Root, s.Hooks, s.Linux.CgroupsPath)
	}
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("the spec joins the engine's %s namespace %s", n.Type, n.Path)
		}
	}
	sources := map[string]string{}
	for _, m := range s.Mounts {
		sources[m.Destination] = m.Source
	}
	want := map[string]string{"/proc": "proc", "/etc/hosts": LocalSource + "hosts", "/dev/shm": LocalSource + "shm", "/data": "/srv/data"}
	for dest, src := range want {
		if sources[dest] != src {
			t.Errorf("mount %s from %q, want %q", dest, sources[dest], src)
		}
	}
}

func TestWritableLayer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		diff    []string // files in rootfs-diff.tar
		deleted string
		want    []string // entries of the layer; nil: no layer
		err     string
	}{
		{name: "unchanged"},
		{name: "changed", diff: []string{"data/marker"}, want: []string{"data/marker"}},
		{name: "changed and deleted", diff: []string{"data/marker"}, deleted: `["/etc/motd","/usr/lib/x.so"]`,
			want: []string{"data/marker", "etc/.wh.motd", "usr/lib/.wh.x.so"}},
		{name: "only deleted", deleted: `["/tmp/gone"]`, want: []string{"tmp/.wh.gone"}},
		{name: "deleted outside", deleted: `["../../../etc/passwd"]`, want: []string{"etc/.wh.passwd"}},
		{name: "bad list", deleted: `{"not":"a list"}`, err: "deleted.files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := stage(t, nil)
			if tc.diff != nil {
				writeTar(t, filepath.Join(dir, store.RootfsDiffFile), tc.diff)
			}
			mt, err := writableLayer(dir, []byte(tc.deleted))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (mt == "") != (tc.want == nil) {
				t.Fatalf("media type %q for layer %v", mt, tc.want)
			}
			if tc.want != nil {
				if got := tarNames(t, filepath.Join(dir, store.RootfsDiffFile)); !slices.Equal(got, tc.want) {
					t.Errorf("layer holds %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func writeTar(t *testing.T, path string, names []string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 4})
		tw.Write([]byte("kept"))
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for tr := tar.NewReader(f); ; {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
