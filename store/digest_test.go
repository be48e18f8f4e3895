package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/ckptd/ckptd/errdefs"
)

// The pieced digest is the same whether fed in order (the prehasher) or
// piece by piece on many workers, at every size around a piece boundary;
// a file of one piece has its plain BLAKE3.
func TestPieceDigest(t *testing.T) {
	defer func(old int64) { pieceSize = old }(pieceSize)
	pieceSize = 1024
	dir := t.TempDir()
	var names []string
	data := map[string][]byte{}
	for _, n := range []int{0, 1, 1023, 1024, 1025, 2048, 2049, 5000} {
		name := "f" + strconv.Itoa(n)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7 / 3)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
		names = append(names, name)
		data[name] = b
	}
	sums, err := sumFiles(context.Background(), dir, names, hashOptions{format: 2, workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		seq := newPieceHash()
		for b := data[name]; len(b) > 0; b = b[min(len(b), 100):] { // odd write sizes
			seq.Write(b[:min(len(b), 100)])
		}
		if got := sums[name]; got.BLAKE3 != seq.Sum() || got.Size != int64(len(data[name])) {
			t.Errorf("%s: parallel %+v, sequential %s", name, got, seq.Sum())
		}
		if len(data[name]) <= 1024 {
			plain := blake3.Sum256(data[name])
			if sums[name].BLAKE3 != hex.EncodeToString(plain[:]) {
				t.Errorf("%s: one piece is not plain BLAKE3", name)
			}
		}
	}
}

// Checkpoints written before format 2 (SHA-256) still verify, and their
// damage is still found.
func TestFormat1StillVerifies(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := publish(t, s, "old", "", map[string]string{"pages-1.img": "old pages"})
	sum := sha256.Sum256([]byte("old pages"))
	c.FormatVersion = 1
	c.Files["pages-1.img"] = FileSum{Size: 9, SHA256: hex.EncodeToString(sum[:])}
	if err := s.Verify(ctx, c); err != nil {
		t.Fatalf("format 1: %v", err)
	}
	os.WriteFile(filepath.Join(s.Dir(c.ID), "pages-1.img"), []byte("old pagez"), 0o600)
	if err := s.Verify(ctx, c); !errdefs.IsDataLoss(err) {
		t.Errorf("damaged format 1: %v", err)
	}
}

// A paced read takes at least its bytes over its rate.
func TestPacedScrub(t *testing.T) {
	s := openStore(t, t.TempDir())
	publish(t, s, "a", "", map[string]string{"pages-1.img": string(bytes.Repeat([]byte("x"), 2<<20))})
	start := time.Now()
	res, err := s.Scrub(context.Background(), 4<<20) // 2 MiB at 4 MiB/s
	if err != nil || res.Checked != 1 {
		t.Fatalf("scrub: %+v %v", res, err)
	}
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("2 MiB at 4 MiB/s took %v", took)
	}
}

// A damaged checkpoint someone holds is left for the next pass.
func TestScrubLeavesHeldCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := publish(t, s, "a", "", map[string]string{"pages-1.img": "pages"})
	os.WriteFile(filepath.Join(s.Dir(c.ID), "pages-1.img"), []byte("pagez"), 0o600)
	_, release, err := s.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Scrub(ctx, 0); err != nil || len(res.Quarantined) != 0 {
		t.Fatalf("scrub of a held checkpoint: %+v %v", res, err)
	}
	release()
	scrub(t, s, 1)
}
