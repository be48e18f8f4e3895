package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidateName: a name that passes stays a single path element under
// any directory it is joined to.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"web-1", "..", "a/b", ".hidden", "a..b", "x\x00", strings.Repeat("a", 65), "ok.name_1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		root := "/state/workloads"
		if p := filepath.Join(root, name); filepath.Dir(p) != root || filepath.Base(p) != name {
			t.Fatalf("accepted name %q escapes: %s", name, p)
		}
	})
}

// FuzzCheckpointRecord: any bytes as a checkpoint.json or index entry
// decode or fail cleanly, and recovery of a directory holding them neither
// panics nor deletes it nor admits a record naming another directory.
func FuzzCheckpointRecord(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"id":"0123456789abcdef","name":"a","files":{"x":{"size":1,"sha256":"00"}}}`))
	f.Add([]byte(`{"format_version":1,"id":"0123456789abcdef","name":"../../x","files":{"../x":{"size":-1}}}`))
	f.Add([]byte(`{"format_version":1,"id":"0123456789abcdef","name":"../x","files":{}}`))
	f.Add([]byte(`{"format_version":1,"id":"0123456789abcdef","name":"x","files":{"../../../../etc/hostname":{"size":1}}}`))
	f.Add([]byte(`{"id":5}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := decode(data); err != nil {
			return
		}
		root := t.TempDir()
		const id = "0123456789abcdef"
		dir := filepath.Join(root, "checkpoints", id)
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, MetadataFile), data, 0o600)
		s, err := Open(context.Background(), root, quiet)
		if err != nil {
			t.Fatalf("recovery failed on a record: %v", err)
		}
		defer s.Close()
		all, _ := s.List(context.Background(), Filter{})
		for _, c := range all {
			if c.ID != id || ValidateName(c.Name) != nil {
				t.Fatalf("admitted record %+v", c)
			}
		}
		_, inQ := os.Stat(filepath.Join(root, "quarantine", id))
		_, inC := os.Stat(dir)
		if inQ != nil && inC != nil {
			t.Fatal("recovery deleted the checkpoint directory")
		}
	})
}
