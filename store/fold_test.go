package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestInterruptedFold: a start finds a fold's marker. Where the crash came
// after the exchange of directories, the record the directory holds goes
// into the index; where it came before, the index stays as it was. Either
// way the marker goes and the checkpoint verifies.
func TestInterruptedFold(t *testing.T) {
	ctx := context.Background()
	for _, exchanged := range []bool{true, false} {
		root := t.TempDir()
		s := openStore(t, root)
		c := publish(t, s, "child", "", map[string]string{"core-1.img": "core", "pages-1.img": "old pages"})
		dir := s.Dir(c.ID)
		want := c.Files
		if exchanged { // the directory now holds the folded images and their record
			if err := os.WriteFile(filepath.Join(dir, "pages-2.img"), []byte("folded pages"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "pages-1.img")); err != nil {
				t.Fatal(err)
			}
			sums, err := sumDir(ctx, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			nc := *c
			nc.Files, want = sums, sums
			if err := writeMetadata(dir, &nc); err != nil {
				t.Fatal(err)
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFolds).Put([]byte(c.ID), []byte("0123456789abcdef")) })
		if err != nil {
			t.Fatal(err)
		}
		s.Close()

		s = openStore(t, root)
		got, err := s.Get(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Files["pages-2.img"]; ok != exchanged || len(got.Files) != len(want) {
			t.Errorf("exchanged=%v: index lists %v, want %v", exchanged, got.Files, want)
		}
		if err := s.Verify(ctx, got); err != nil {
			t.Errorf("exchanged=%v: %v", exchanged, err)
		}
		s.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketFolds).Stats().KeyN != 0 {
				t.Errorf("exchanged=%v: the fold's marker outlived the start", exchanged)
			}
			return nil
		})
	}
}
