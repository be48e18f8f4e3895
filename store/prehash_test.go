package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPrehashFollowsGrowingImages writes page images in pieces, as CRIU
// does, while the background hash follows, including one file that is
// truncated and one replaced midway, and checks the published sums.
func TestPrehashFollowsGrowingImages(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := &Checkpoint{ID: NewID(), Name: "grow"}
	dir, err := s.Stage(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	grow, _ := os.Create(filepath.Join(dir, "pages-1.img"))
	shrink, _ := os.Create(filepath.Join(dir, "pages-2.img"))
	for i := range 8 {
		grow.Write(chunk)
		shrink.Write(chunk)
		if i == 4 {
			shrink.Truncate(0)
			shrink.Seek(0, 0)
		}
		time.Sleep(2 * prehashEvery)
	}
	grow.Close()
	shrink.Close()
	replaced := filepath.Join(dir, "pages-3.img")
	os.WriteFile(replaced, chunk, 0o600)
	time.Sleep(3 * prehashEvery)
	os.Remove(replaced)
	os.WriteFile(replaced, chunk[:100], 0o600)

	if err := s.Publish(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx, c); err != nil {
		t.Fatalf("sums taken while the images grew do not verify: %v", err)
	}
	if c.Files["pages-1.img"].Size != 8<<20 || c.Files["pages-3.img"].Size != 100 {
		t.Errorf("sizes: %+v", c.Files)
	}
}
