package logfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "output.log")
	// A writer that keeps its O_APPEND descriptor, as a workload does.
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := Policy{MaxSize: 4096, MaxFiles: 3}
	for round, fill := range []string{"a", "b", "c", "d"} {
		if _, err := w.WriteString(strings.Repeat(fill, 5000)); err != nil {
			t.Fatal(err)
		}
		rotated, err := p.Rotate(path)
		if err != nil || !rotated {
			t.Fatalf("round %d: rotated %v, %v", round, rotated, err)
		}
		if rotated, _ := p.Rotate(path); rotated {
			t.Fatalf("round %d: an empty log rotated", round)
		}
	}
	if _, err := w.WriteString("after"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"output.log": "after", "output.log.1": strings.Repeat("d", 5000), "output.log.2": strings.Repeat("c", 5000)} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %d bytes (%.10q...), %v; want %d bytes", name, len(got), got, err, len(want))
		}
	}
	if _, err := os.Stat(Old(path, 3)); !os.IsNotExist(err) {
		t.Errorf("a third old log is kept with max files 3: %v", err)
	}
	for _, bad := range []Policy{{MaxSize: 10, MaxFiles: 3}, {MaxSize: 1 << 20, MaxFiles: 0}} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed", bad)
		}
	}
}
