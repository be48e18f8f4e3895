package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the archive reader: it must not
// panic, and must write nothing but plain names inside its directory.
func FuzzRead(f *testing.F) {
	var seed bytes.Buffer
	tw := tar.NewWriter(&seed)
	for _, e := range []struct{ name, body string }{
		{RecordName, `{"id":"0123456789abcdef","name":"x","files":{"pages-1.img":{"size":3}}}`},
		{"checkpoint/pages-1.img", "abc"},
		{"checkpoint/../escape", "no"},
		{"spec.dump", "{}"},
	} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.body))})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	f.Add(seed.Bytes())
	f.Add([]byte("not an archive"))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "in")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		free, err := freeBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Entries beyond 1 MiB are refused: a compressed input may expand
		// to gigabytes, bounded by the disk, as an import's is.
		Read(bytes.NewReader(data), dir, free-(1<<20))
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err == nil && p != root && p != dir && !strings.HasPrefix(p, dir+"/") {
				t.Fatalf("wrote %s outside %s", p, dir)
			}
			if err == nil && info.IsDir() && p != root && p != dir {
				t.Fatalf("made directory %s", p)
			}
			return nil
		})
	})
}
