package foreign

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptd/ckptd/store"
)

// FuzzConvert feeds arbitrary config.dump, spec.dump and deleted.files
// to Convert: it must not panic, and must write nothing but the spec and
// the layer in its directory.
func FuzzConvert(f *testing.F) {
	spec, _ := json.Marshal(podmanSpec(""))
	f.Add([]byte(`{"id":"a1","name":"pc","rootfsImageID":"0dd6","rootfsImageName":"busybox"}`), spec, []byte(`["/etc/motd"]`))
	f.Add([]byte(`{"name":"x","rootfsImage":"i"}`), []byte(`{"linux":{},"process":{},"mounts":[{"destination":"/dev/shm","type":"bind"}]}`), []byte(`[""]`))
	f.Add([]byte(`{}`), []byte(`null`), []byte(`["../../x","/"]`))
	f.Fuzz(func(t *testing.T, config, spec, deleted []byte) {
		dir := filepath.Join(t.TempDir(), "0123456789abcdef")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, store.ContainerSpecFile), spec, 0o600); err != nil {
			t.Fatal(err)
		}
		Convert(dir, config, deleted, "default", "")
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != store.ContainerSpecFile && e.Name() != store.RootfsDiffFile {
				t.Fatalf("Convert left %s", e.Name())
			}
		}
		if parent, _ := os.ReadDir(filepath.Dir(dir)); len(parent) != 1 {
			t.Fatalf("Convert wrote beside its directory: %v", parent)
		}
	})
}
