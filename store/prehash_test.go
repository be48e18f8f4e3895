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

// TestPrehashVouchesOnlyForWhatItRead drives the prehasher directly: the
// sums it returns must be its own (not the final pass's) and right, also
// when the file shrank between taking its size and reading it, and a file
// it failed to read must be left for the final pass.
func TestPrehashVouchesOnlyForWhatItRead(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("page"), 1<<18) // 1 MiB
	path := filepath.Join(dir, "pages-1.img")
	if err := os.WriteFile(path, data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPrehash(dir, true)
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.files["pages-1.img"] != nil })
	p.mu.Lock()
	pt := p.files["pages-1.img"]
	// The size seen was 200 but only 100 bytes were there to read.
	if err := pt.catchUpTo(200); err != nil {
		t.Fatal(err)
	}
	if pt.off != 100 {
		t.Errorf("offset after a short read: %d, want 100", pt.off)
	}
	p.mu.Unlock()
	if err := os.WriteFile(path, data, 0o600); err != nil { // grows in place
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "pages-2.img")
	if err := os.WriteFile(broken, data, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.files["pages-2.img"] != nil })
	p.mu.Lock()
	p.files["pages-2.img"].err = os.ErrClosed // as a failed read leaves it
	p.mu.Unlock()

	sums := p.finish(dir)
	wants, err := sumFiles(context.Background(), dir, []string{"pages-1.img"}, hashOptions{format: FormatVersion})
	if err != nil {
		t.Fatal(err)
	}
	want := wants["pages-1.img"]
	if got, ok := sums["pages-1.img"]; !ok || got != want {
		t.Errorf("prehash sum of pages-1.img = %+v (present %v), want %+v", got, ok, want)
	}
	if _, ok := sums["pages-2.img"]; ok {
		t.Error("prehash vouched for a file it failed to read")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(prehashEvery)
	}
	t.Fatal("condition not reached in 5 s")
}
