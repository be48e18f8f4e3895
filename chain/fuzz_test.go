package chain

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzChain: an imported or damaged checkpoint's pagemap, mm image and
// pages file are outside input to Check, Dedup and Rewrite: any bytes fail
// cleanly, never panic, never allocate what the input claims unchecked.
func FuzzChain(f *testing.F) {
	seed := &pagemapImage{pagesID: 1}
	seed.add(base, 2, pePresent|peLazy)
	seed.add(base+4*pageSize, 1, peParent)
	good, _ := seed.encode()
	f.Add(good, []byte{}, 2)
	f.Add(good[:len(good)-3], []byte{1, 2}, 1)
	f.Add([]byte{}, []byte{0xff, 0xff, 0xff, 0x7f}, 0)
	f.Fuzz(func(t *testing.T, pagemapImg, mmImg []byte, pages int) {
		root := t.TempDir()
		parent, child := filepath.Join(root, "00000000000000c1"), filepath.Join(root, "00000000000000c2")
		for _, dir := range []string{parent, child} {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string][]byte{
				"pagemap-1.img": pagemapImg, "mm-1.img": mmImg, "pages-1.img": make([]byte, (pages&7)*pageSize),
			} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		Check(child)
		Dedup(context.Background(), child, parent)
		Check(child)
		Rewrite(context.Background(), child, filepath.Join(root, "out"), -1)
		ReadMemory(child, "pagemap-1.img", base, 100)
	})
}
