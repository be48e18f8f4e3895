package images

import (
	"os"
	"path/filepath"
	"testing"
)

// pstreeMagic opens pstree.img: the common images magic, then its own.
var pstreeMagic = []byte{0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50}

// FuzzRead: inspect and pre-flight read images a peer sent or a disk
// mangled; any bytes as pstree.img (and as tty-info.img) fail cleanly,
// never panic. So do the same bytes as core-1.img (TreeCreds) and as
// files.img (NeedsNetwork, TCPConnections, Needs).
func FuzzRead(f *testing.F) {
	f.Add(append(append([]byte{}, pstreeMagic...), 4, 0, 0, 0, 8, 1, 16, 0, 24, 1))
	f.Add([]byte{})
	f.Add(append(append([]byte{}, pstreeMagic...), 0xff, 0xff, 0xff, 0x7f))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "pstree.img"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		PIDs(dir)
		Read(dir)
		TreeCreds(dir) // its core-1.img is missing, or the same bytes next
		if err := os.WriteFile(filepath.Join(dir, "core-1.img"), data, 0o600); err == nil {
			TreeCreds(dir)
		}
		if err := os.WriteFile(filepath.Join(dir, "tty-info.img"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		TerminalSize(dir)
		if err := os.WriteFile(filepath.Join(dir, "files.img"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		NeedsNetwork(dir)
		TCPConnections(dir)
		Needs(dir)
	})
}
