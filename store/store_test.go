package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(context.Background(), root, quiet)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// publish stages a checkpoint with files and publishes it.
// staged writes files into the staging directory of a new checkpoint.
func staged(t *testing.T, s *Store, name, parent string, files map[string]string) *Checkpoint {
	t.Helper()
	c := &Checkpoint{ID: NewID(), Name: name, Parent: parent, Target: TargetRef{Kind: KindWorkload, Name: "w"}}
	dir, err := s.Stage(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for n, data := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func publish(t *testing.T, s *Store, name, parent string, files map[string]string) *Checkpoint {
	t.Helper()
	c := staged(t, s, name, parent, files)
	if err := s.Publish(context.Background(), c); err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	return c
}

func TestPublishIsVisibleOnlyWhenComplete(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	id := NewID()
	if _, err := s.Stage(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("staged checkpoint visible: %v", err)
	}
	c := publish(t, s, "one", "", map[string]string{"pages-1.img": "abc", "core-1.img": "x"})
	got, err := s.Get(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	if got.FormatVersion != FormatVersion || len(got.Files) != 2 || got.Files["pages-1.img"].Size != 3 {
		t.Errorf("published record: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(c.ID), MetadataFile)); err != nil {
		t.Errorf("no %s: %v", MetadataFile, err)
	}
	if err := s.Verify(ctx, got); err != nil {
		t.Errorf("verify fresh checkpoint: %v", err)
	}
	if _, err := s.Get(ctx, c.ID[:4]); err != nil {
		t.Errorf("get by id prefix: %v", err)
	}
}

func TestPublishRefusesTakenName(t *testing.T) {
	s := openStore(t, t.TempDir())
	publish(t, s, "dup", "", map[string]string{"a": "1"})
	c := &Checkpoint{ID: NewID(), Name: "dup"}
	if _, err := s.Stage(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background(), c); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("publish with taken name: %v", err)
	}
	if err := s.Discard(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir(c.ID)); !os.IsNotExist(err) {
		t.Errorf("discarded checkpoint directory remains")
	}
}

func TestRecoverRemovesStagingAndScrubQuarantinesDamage(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	publish(t, s, "good", "", map[string]string{"a": "1"})
	bad := publish(t, s, "bad", "", map[string]string{"a": "2"})
	gone := publish(t, s, "gone", "", map[string]string{"a": "3"})
	if _, err := s.Stage(context.Background(), NewID()); err != nil {
		t.Fatal(err)
	}
	unindexed := filepath.Join(root, "checkpoints", NewID())
	os.Mkdir(unindexed, 0o700)
	os.WriteFile(filepath.Join(s.Dir(bad.ID), "a"), []byte("X"), 0o600)
	os.RemoveAll(s.Dir(gone.ID))
	s.Close()

	s = openStore(t, root)
	// A start reads no image: the damage is the scrub's to find.
	if got := names(t, s); !slices.Equal(got, []string{"bad", "good"}) {
		t.Fatalf("after recovery: %v, want bad and good", got)
	}
	if res := scrub(t, s, 1); res.Quarantined[0] != bad.ID || res.Checked != 2 {
		t.Errorf("scrub: %+v, want %s quarantined of 2", res, bad.ID)
	}
	if got := names(t, s); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("after scrub: %v, want good", got)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "staging")); len(left) != 0 {
		t.Errorf("staging leftovers: %v", left)
	}
	if _, err := os.Stat(filepath.Join(root, "quarantine", filepath.Base(unindexed))); err != nil {
		t.Errorf("unindexed directory without a record not quarantined: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "quarantine", bad.ID)); err != nil {
		t.Errorf("damaged checkpoint not quarantined: %v", err)
	}
	if taken, _ := s.NameTaken(context.Background(), "bad"); taken {
		t.Error("name of dropped checkpoint still taken")
	}
}

func TestVerifyDetectsDamage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	for _, tc := range []struct {
		name   string
		damage func(dir string)
	}{
		{"flipped byte", func(dir string) { os.WriteFile(filepath.Join(dir, "pages"), []byte("xbc"), 0o600) }},
		{"truncated", func(dir string) { os.Truncate(filepath.Join(dir, "pages"), 1) }},
		{"missing", func(dir string) { os.Remove(filepath.Join(dir, "pages")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := publish(t, s, "v-"+NewID()[:6], "", map[string]string{"pages": "abc"})
			tc.damage(s.Dir(c.ID))
			err := s.Verify(ctx, c)
			if !errdefs.IsDataLoss(err) {
				t.Fatalf("verify: %v, want data loss", err)
			}
		})
	}
}

func TestRemoveRespectsLineage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	root := publish(t, s, "root", "", map[string]string{"a": "1"})
	kid := publish(t, s, "kid", root.ID, map[string]string{"a": "2"})
	grandkid := publish(t, s, "grandkid", kid.ID, map[string]string{"a": "3"})
	other := publish(t, s, "other", "", map[string]string{"a": "4"})

	if _, err := s.Remove(ctx, []string{"root"}, false); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove with descendants: %v", err)
	}
	if _, err := s.Remove(ctx, []string{"other", "nope"}, false); !errdefs.IsNotFound(err) {
		t.Fatalf("remove with an unknown ref: %v", err)
	}
	if _, err := s.Get(ctx, "other"); err != nil {
		t.Fatalf("a failed remove removed something: %v", err)
	}
	ids, err := s.Remove(ctx, []string{"kid"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != grandkid.ID || ids[1] != kid.ID {
		t.Errorf("removed %v, want grandkid then kid", ids)
	}
	if _, err := s.Remove(ctx, []string{"root", "other"}, false); err != nil {
		t.Errorf("remove leaves: %v", err)
	}
	if _, err := os.Stat(s.Dir(root.ID)); !os.IsNotExist(err) {
		t.Error("removed checkpoint directory remains")
	}
	if _, err := os.Stat(s.Dir(other.ID)); !os.IsNotExist(err) {
		t.Error("removed checkpoint directory remains")
	}
	orphan := &Checkpoint{ID: NewID(), Name: "orphan", Parent: "0123456789abcdef"}
	if _, err := s.Stage(ctx, orphan.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, orphan); !errdefs.IsNotFound(err) {
		t.Errorf("publish with unknown parent: %v", err)
	}
}

func TestConcurrentPublishers(t *testing.T) {
	s := openStore(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Checkpoint{ID: NewID(), Name: fmt.Sprintf("c%d", i)}
			dir, err := s.Stage(context.Background(), c.ID)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "img"), []byte(c.Name), 0o600)
			}
			if err == nil {
				err = s.Publish(context.Background(), c)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	all, _ := s.List(context.Background(), Filter{})
	if len(all) != 16 {
		t.Errorf("%d checkpoints, want 16", len(all))
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	root := t.TempDir()
	openStore(t, root)
	_, err := Open(context.Background(), root, quiet)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("second open: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web-1", true}, {"a.b_c", true}, {"A9", true},
		{"", false}, {"..", false}, {"a..b", false}, {"a/b", false}, {"/abs", false},
		{".hidden", false}, {"-flag", false}, {"sp ace", false}, {string(make([]byte, 65)), false},
		{"nul\x00", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateName(%q): %v is not InvalidArgument", tc.name, err)
		}
	}
}

func TestTargets(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	tg := &Target{TargetRef: TargetRef{Kind: KindWorkload, Name: "w", PID: 42}, RestoredFrom: "abc"}
	if err := s.PutTarget(ctx, tg); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTarget(ctx, "workload/w")
	if err != nil || got.PID != 42 || got.RestoredFrom != "abc" {
		t.Fatalf("get target: %+v %v", got, err)
	}
	if _, err := s.GetTarget(ctx, "pid/1"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown target: %v", err)
	}
}

// Checkpoints hold whole memories: whatever the umask and however a file
// was written, the state root and every published file are root's alone.
func TestPublishedFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(root, "checkpoints"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, root)
	c := &Checkpoint{ID: NewID(), Name: "private"}
	dir, err := s.Stage(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pages-1.img", "core-1.img"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("secret"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * prehashEvery) // let the prehash take the page image
	if err := s.Publish(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	err = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v", p, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
