package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// publishSealing stages files and commits them as a sealing checkpoint.
func publishSealing(t *testing.T, s *Store, name string, files map[string]string) *Checkpoint {
	t.Helper()
	c := staged(t, s, name, "", files)
	if err := s.PublishSealing(context.Background(), c); err != nil {
		t.Fatalf("publish sealing %s: %v", name, err)
	}
	return c
}

// A sealing checkpoint is listed at once, but cannot be verified or
// removed until it is sealed; restores wait for the seal.
func TestSealAfterRelease(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := publishSealing(t, s, "snap", map[string]string{"pages-1.img": strings.Repeat("p", 3<<20)})
	got, err := s.Get(ctx, "snap")
	if err != nil || !got.IsSealing() || got.BootID != s.bootID || len(got.Files) != 0 {
		t.Fatalf("committed record: %+v %v", got, err)
	}
	if err := s.Verify(ctx, got); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("verify of a sealing checkpoint: %v", err)
	}
	if _, err := s.Remove(ctx, []string{"snap"}, false); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("rm of a sealing checkpoint: %v", err)
	}
	waited := make(chan error, 1)
	go func() {
		c, err := s.WaitSealed(ctx, c.ID)
		if err == nil && c.IsSealing() {
			err = errors.New("still sealing after the wait")
		}
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("wait returned before the seal: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "dump.log"), []byte("log"), 0o600)
	sealed, err := s.Seal(ctx, c.ID, &DumpStats{FrozenTime: 7}, work, "dump.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("wait: %v", err)
	}
	if sealed.State != StateSealed || sealed.Sealed.IsZero() || sealed.Stats.FrozenTime != 7 ||
		sealed.Files["pages-1.img"].BLAKE3 == "" || sealed.Files["dump.log"].Size != 3 {
		t.Errorf("sealed record: %+v", sealed)
	}
	if err := s.Verify(ctx, sealed); err != nil {
		t.Errorf("verify after seal: %v", err)
	}
	onDisk, err := readMetadata(s.Dir(c.ID))
	if err != nil || onDisk.State != StateSealed || len(onDisk.Files) != 2 {
		t.Errorf("checkpoint.json after seal: %+v %v", onDisk, err)
	}
	if st, _ := os.Stat(filepath.Join(s.Dir(c.ID), "pages-1.img")); st.Mode().Perm() != 0o600 {
		t.Errorf("sealed image mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := s.Remove(ctx, []string{"snap"}, false); err != nil {
		t.Errorf("rm after seal: %v", err)
	}
}

// A seal that fails removes its checkpoint and tells those waiting.
func TestFailedSealRemovesCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := publishSealing(t, s, "snap", map[string]string{"a": "1"})
	waited := make(chan error, 1)
	go func() { _, err := s.WaitSealed(ctx, c.ID); waited <- err }()
	acquired := make(chan error, 1)
	go func() { _, _, err := s.AcquireSealed(ctx, c.ID); acquired <- err }()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.busy[c.ID] == 2 }) // the seal's and ours
	if _, err := s.Seal(ctx, c.ID, nil, t.TempDir(), "missing.log"); err == nil {
		t.Fatal("seal with a missing file succeeded")
	}
	if err := <-waited; err == nil {
		t.Error("wait on a failed seal succeeded")
	}
	if err := <-acquired; err == nil {
		t.Error("acquire of a checkpoint whose seal failed succeeded")
	}
	if s.mu.Lock(); len(s.busy) != 0 {
		t.Errorf("holds left after a failed seal: %v", s.busy)
	}
	s.mu.Unlock()
	if _, err := s.Get(ctx, c.ID); !errdefs.IsNotFound(err) {
		t.Errorf("checkpoint after a failed seal: %v", err)
	}
	if _, err := os.Stat(s.Dir(c.ID)); !os.IsNotExist(err) {
		t.Errorf("directory after a failed seal: %v", err)
	}
}

// A ckptd that stopped while sealing: in the same boot the next start
// seals the checkpoint; after a reboot (another boot id) it quarantines
// it, whether the index still lists it or not.
func TestInterruptedSeal(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		rebooted  bool
		loseIndex bool
	}{
		{"same boot", false, false},
		{"same boot, index lost", false, true},
		{"rebooted", true, false},
		{"rebooted, index lost", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := openStore(t, root)
			c := publishSealing(t, s, "snap", map[string]string{"pages-1.img": "pages"})
			s.Close() // as a crash leaves it: committed, never sealed
			if tc.rebooted {
				rewriteBootID(t, s, c.ID, "00000000-0000-0000-0000-000000000000")
			}
			if tc.loseIndex {
				os.Remove(filepath.Join(root, "index.db"))
			}
			s = openStore(t, root)
			if tc.rebooted {
				if _, err := s.Get(ctx, c.ID); !errdefs.IsNotFound(err) {
					t.Fatalf("rebooted sealing checkpoint still listed: %v", err)
				}
				qs, _ := s.ListQuarantined(ctx)
				if len(qs) != 1 || qs[0].ID != c.ID || !strings.Contains(qs[0].Reason, "reboot") {
					t.Fatalf("quarantine: %+v", qs)
				}
				return
			}
			sealed, err := s.WaitSealed(ctx, c.ID)
			if err != nil || sealed.IsSealing() {
				t.Fatalf("resealed: %+v %v", sealed, err)
			}
			if err := s.Verify(ctx, sealed); err != nil {
				t.Errorf("verify after reseal: %v", err)
			}
		})
	}
}

// rewriteBootID edits a closed store's record of id as a reboot would
// leave it: in checkpoint.json and in the index.
func rewriteBootID(t *testing.T, closed *Store, id, boot string) {
	t.Helper()
	dir := closed.layout.Checkpoint(id)
	c, err := readMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	c.BootID = boot
	if err := writeMetadata(dir, c); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(closed.layout.Index(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	data, _ := json.Marshal(c)
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCheckpoints).Put([]byte(id), data) }); err != nil {
		t.Fatal(err)
	}
}
