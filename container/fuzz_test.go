package container

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRef: a target string from a user either parses into a ref whose
// name is safe as two path elements, or fails cleanly.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"ctr:web", "ctr:default/web", "ctr:../x", "ctr:a/b/c", "ctr:", "ctr:/x", "web"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := ParseRef(target, "default")
		if err != nil {
			return
		}
		root := "/state/containers"
		p := filepath.Join(root, r.Namespace, r.ID)
		if !strings.HasPrefix(p, root+"/") || filepath.Dir(filepath.Dir(p)) != root {
			t.Fatalf("ref %+v from %q escapes: %s", r, target, p)
		}
		back, err := RefFromName(r.Name())
		if err != nil || back != r {
			t.Fatalf("ref %+v does not survive its name %q: %+v %v", r, r.Name(), back, err)
		}
	})
}
