package container

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{in: "ctr:default/web", want: Ref{"default", "web"}},
		{in: "ctr:web", want: Ref{"dflt", "web"}},
		{in: "ctr:k8s.io/a-b_c.1", want: Ref{"k8s.io", "a-b_c.1"}},
		{in: "web", wantErr: true},
		{in: "ctr:", wantErr: true},
		{in: "ctr:default/", wantErr: true},
		{in: "ctr:/web", wantErr: true},
		{in: "ctr:a/b/c", wantErr: true},
		{in: "ctr:a b/web", wantErr: true},
		{in: "ctr:default/..", wantErr: true},
	} {
		got, err := ParseRef(tc.in, "dflt")
		if tc.wantErr {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("ParseRef(%q) = %v, %v; want InvalidArgument", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := RefFromName(got.Name()); err != nil || back != got {
			t.Errorf("RefFromName(%q) = %v, %v", got.Name(), back, err)
		}
	}
}

func TestNofileWarnings(t *testing.T) {
	spec := func(rl ...specs.POSIXRlimit) *specs.Spec { return &specs.Spec{Process: &specs.Process{Rlimits: rl}} }
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want int
	}{
		{"no process", &specs.Spec{}, 0},
		{"within", spec(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}), 0},
		{"at the limit", spec(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 20000, Hard: 20000}), 0},
		{"podman default", spec(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 1048576, Hard: 1048576}), 1},
		{"soft only", spec(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 30000, Hard: 10}), 1},
		{"other limit", spec(specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: 1 << 30, Hard: 1 << 30}), 0},
	} {
		if got := nofileWarnings(tc.spec, 20000); len(got) != tc.want {
			t.Errorf("%s: %d warnings %q, want %d", tc.name, len(got), got, tc.want)
		}
	}
}

func TestCopyCgroupPath(t *testing.T) {
	from := Ref{Namespace: "default", ID: "web"}
	for _, tc := range []struct {
		path string
		to   Ref
		want string
	}{
		{"/default/web", Ref{Namespace: "default", ID: "web2"}, "/default/web2"},
		{"/default/web", Ref{Namespace: "moved", ID: "web"}, "/moved/web"},
		{"/k8s/pod1/web", Ref{Namespace: "default", ID: "web2"}, "/k8s/pod1/web2"},
		{"system.slice:ctr:web", Ref{Namespace: "default", ID: "web2"}, "system.slice:ctr:web2"},
	} {
		if got := copyCgroupPath(tc.path, from, tc.to); got != tc.want {
			t.Errorf("copyCgroupPath(%q, %v) = %q, want %q", tc.path, tc.to, got, tc.want)
		}
	}
}
