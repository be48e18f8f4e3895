package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPublishVerifiedReadsOnce: an import's files, checked against the
// archive's record, are not hashed again when published, unless they
// changed since the check (the ingest boundary rewrites a container's
// spec); a damaged one is refused at the check.
func TestPublishVerifiedReadsOnce(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	files := map[string]string{"pages-1.img": "pages", "config.json": `{"spec":1}`, "core-1.img": "core"}
	stage := func() (*Checkpoint, string) {
		id := NewID()
		dir, err := s.StageUnhashed(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for n, data := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		names := []string{"config.json", "core-1.img", "pages-1.img"}
		sums, err := sumFiles(ctx, dir, names, hashOptions{format: FormatVersion})
		if err != nil {
			t.Fatal(err)
		}
		rec := &Checkpoint{ID: NewID(), Name: "exported", Target: TargetRef{Kind: KindWorkload, Name: "w"},
			FormatVersion: FormatVersion, State: StateSealed, Files: sums, Created: time.Now()}
		return rec, id
	}

	rec, id := stage()
	v, err := s.CheckImport(ctx, id, rec)
	if err != nil {
		t.Fatal(err)
	}
	// A sum the publish would not compute: it can only have been reused.
	reused := v.sums["core-1.img"]
	reused.BLAKE3 = "reused"
	v.sums["core-1.img"] = reused
	time.Sleep(10 * time.Millisecond) // a rewrite gets another mtime
	spec := filepath.Join(s.layout.Staging(id), "config.json")
	if err := os.WriteFile(spec+".new", []byte(`{"spec":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(spec+".new", spec); err != nil {
		t.Fatal(err)
	}
	c := &Checkpoint{ID: id, Name: "imported", Target: rec.Target}
	if err := s.PublishVerified(ctx, c, v); err != nil {
		t.Fatal(err)
	}
	if c.Files["core-1.img"].BLAKE3 != "reused" {
		t.Errorf("core-1.img was hashed again: %+v", c.Files["core-1.img"])
	}
	if st, err := os.Stat(filepath.Join(s.layout.Checkpoint(id), "core-1.img")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a reused file is not sealed (root's alone): %v %v", st.Mode(), err)
	}
	if c.Files["config.json"] == rec.Files["config.json"] || c.Files["config.json"].Size != int64(len(`{"spec":2}`)) {
		t.Errorf("the rewritten spec kept the archive's sum: %+v", c.Files["config.json"])
	}

	rec, id = stage()
	if err := os.WriteFile(filepath.Join(s.layout.Staging(id), "pages-1.img"), []byte("PAGES"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckImport(ctx, id, rec); err == nil {
		t.Error("a damaged file passed the check")
	}
}
