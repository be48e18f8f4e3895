package store

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ckptd/ckptd/errdefs"
)

// names lists the indexed names, sorted.
func names(t *testing.T, s *Store) []string {
	t.Helper()
	all, err := s.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range all {
		out = append(out, c.Name)
	}
	slices.Sort(out)
	return out
}

// A start cancelled while it verifies unindexed checkpoints (SIGTERM
// during start-up after the index was lost) must stop without moving
// anything.
func TestCancelledStartTouchesNothing(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	for _, n := range []string{"a", "b", "c"} {
		publish(t, s, n, "", map[string]string{"pages-1.img": strings.Repeat(n, 1<<20)})
	}
	s.Close()
	if err := os.Remove(filepath.Join(root, "index.db")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, root, quiet); err == nil {
		t.Fatal("open with a cancelled context succeeded")
	}
	if q, _ := os.ReadDir(filepath.Join(root, "quarantine")); len(q) != 0 {
		t.Errorf("cancelled start quarantined %d checkpoints", len(q))
	}
	s = openStore(t, root)
	if got := names(t, s); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("after a cancelled start: %v", got)
	}
}

// A checkpoint of a newer format is not this ckptd's to judge: it stays
// where it is, indexed or not.
func TestNewerFormatIsLeftAlone(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	c := publish(t, s, "newer", "", map[string]string{"a": "1"})
	c.FormatVersion = FormatVersion + 1
	if err := writeMetadata(s.Dir(c.ID), c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Remove(filepath.Join(root, "index.db"))
	s = openStore(t, root)
	if _, err := os.Stat(filepath.Join(s.Dir(c.ID), "a")); err != nil {
		t.Fatalf("newer-format checkpoint touched: %v", err)
	}
	if q, _ := os.ReadDir(filepath.Join(root, "quarantine")); len(q) != 0 {
		t.Errorf("newer-format checkpoint quarantined")
	}
}

// Losing index.db loses nothing: the index is rebuilt from each
// directory's checkpoint.json, lineage included.
func TestLostIndexIsRebuilt(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	a := publish(t, s, "a", "", map[string]string{"x": "1"})
	b := publish(t, s, "b", a.ID, map[string]string{"x": "2"})
	publish(t, s, "c", b.ID, map[string]string{"x": "3"})
	s.Close()
	if err := os.Remove(filepath.Join(root, "index.db")); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, root)
	if got := names(t, s); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("rebuilt index: %v", got)
	}
	if got, err := s.Get(context.Background(), "c"); err != nil || got.Parent != b.ID {
		t.Errorf("lineage after rebuild: %+v %v", got, err)
	}
}

// A quarantined checkpoint stays visible with its reason, is refused for
// readmission while damaged, comes back once repaired (by Check or by
// moving it back by hand), and is removed only by Remove.
func TestQuarantineLifecycle(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	c := publish(t, s, "q", "", map[string]string{"pages": "abc"})
	pages := filepath.Join(s.Dir(c.ID), "pages")
	os.WriteFile(pages, []byte("xbc"), 0o600)
	scrub(t, s, 1)
	qs, err := s.ListQuarantined(ctx)
	if err != nil || len(qs) != 1 || qs[0].Checkpoint == nil || qs[0].Checkpoint.Name != "q" || !strings.Contains(qs[0].Reason, "checksum") {
		t.Fatalf("quarantine list: %+v %v", qs, err)
	}
	res, err := s.Check(ctx, "q", true)
	if err != nil || res.Readmitted || !errdefs.IsDataLoss(res.Problem) {
		t.Fatalf("readmit of a damaged checkpoint: %+v %v", res, err)
	}
	qpages := filepath.Join(root, "quarantine", c.ID, "pages")
	os.WriteFile(qpages, []byte("abc"), 0o600) // repaired
	if res, err = s.Check(ctx, c.ID[:6], true); err != nil || !res.Readmitted {
		t.Fatalf("readmit of a repaired checkpoint: %+v %v", res, err)
	}
	if _, err := s.Get(ctx, "q"); err != nil {
		t.Fatalf("readmitted checkpoint not listed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(c.ID), QuarantineNote)); !os.IsNotExist(err) {
		t.Error("readmitted checkpoint keeps its quarantine note")
	}

	// Damaged again, quarantined again, then repaired and moved back by
	// hand: the next start readmits it instead of deleting it.
	os.WriteFile(pages, []byte("xbc"), 0o600)
	scrub(t, s, 1)
	os.WriteFile(qpages, []byte("abc"), 0o600)
	s.Close()
	if err := os.Rename(filepath.Join(root, "quarantine", c.ID), s.Dir(c.ID)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, root)
	if got := names(t, s); !slices.Equal(got, []string{"q"}) {
		t.Fatalf("moved back by hand: %v", got)
	}

	os.WriteFile(pages, []byte("xbc"), 0o600)
	scrub(t, s, 1)
	if ids, err := s.Remove(ctx, []string{"q"}, false); err != nil || len(ids) != 1 {
		t.Fatalf("remove quarantined: %v %v", ids, err)
	}
	if qs, _ := s.ListQuarantined(ctx); len(qs) != 0 {
		t.Errorf("quarantine after rm: %+v", qs)
	}
}

// Readmitting a checkpoint whose name was taken meanwhile keeps both.
func TestReadmitWithTakenName(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	c := publish(t, s, "dup", "", map[string]string{"a": "1"})
	os.WriteFile(filepath.Join(s.Dir(c.ID), "a"), []byte("2"), 0o600)
	scrub(t, s, 1)
	publish(t, s, "dup", "", map[string]string{"a": "3"})
	os.WriteFile(filepath.Join(root, "quarantine", c.ID, "a"), []byte("1"), 0o600)
	res, err := s.Check(ctx, c.ID, true)
	if err != nil || !res.Readmitted {
		t.Fatalf("readmit: %+v %v", res, err)
	}
	want := "dup-" + c.ID[:8]
	if got := names(t, s); !slices.Equal(got, []string{"dup", want}) {
		t.Errorf("names: %v, want %s and dup", got, want)
	}
	s.Close()
	s = openStore(t, root) // the new name is in checkpoint.json too
	if got, err := s.Get(ctx, want); err != nil || got.ID != c.ID {
		t.Errorf("after restart: %+v %v", got, err)
	}
}

// A checkpoint being read cannot be removed, even as a descendant; a
// record removed before Finish is not put back.
func TestRemoveRefusesHeldCheckpoints(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a := publish(t, s, "a", "", map[string]string{"x": "1"})
	publish(t, s, "b", a.ID, map[string]string{"x": "2"})
	_, release, err := s.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, []string{"a"}, true); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove of a held descendant: %v", err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a refused remove removed something: %v", got)
	}
	release()
	if _, err := s.Remove(ctx, []string{"a"}, true); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "dump.log"), []byte("log"), 0o600)
	if err := s.Finish(ctx, a.ID, nil, work, "dump.log"); !errdefs.IsNotFound(err) {
		t.Errorf("finish of a removed checkpoint: %v", err)
	}
	if got := names(t, s); len(got) != 0 {
		t.Errorf("finish put back %v", got)
	}
}

// An rm interrupted after the index commit (its directory in the trash)
// completes at the next start; one interrupted before it (directory still
// in the trash, index still listing it) is dropped from the index.
func TestInterruptedRemoveCompletes(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	a := publish(t, s, "a", "", map[string]string{"x": "1"})
	publish(t, s, "b", "", map[string]string{"x": "2"})
	s.Close()
	if err := os.Rename(s.Dir(a.ID), filepath.Join(root, "removing", a.ID)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, root)
	if got := names(t, s); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after an interrupted rm: %v", got)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "removing")); len(left) != 0 {
		t.Errorf("trash not emptied: %v", left)
	}
}

// A pending checkpoint (complete images, published later) left in staging
// by a crash is sealed at the next start; an unmarked one is discarded.
func TestPendingCheckpointIsSealed(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	taken := publish(t, s, "in", "", map[string]string{"x": "0"})
	c := &Checkpoint{ID: NewID(), Name: "in", Target: TargetRef{Kind: KindWorkload, Name: "w"}}
	dir, err := s.StageUnhashed(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pages-1.img"), []byte("pages"), 0o600)
	if err := s.MarkPending(ctx, c); err != nil {
		t.Fatal(err)
	}
	unmarked, err := s.StageUnhashed(ctx, NewID())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, root)
	want := "in-" + c.ID[:8] // "in" was taken meanwhile
	got, err := s.Get(ctx, want)
	if err != nil || got.ID != c.ID || len(got.Files) != 1 {
		t.Fatalf("sealed pending checkpoint: %+v %v", got, err)
	}
	if err := s.Verify(ctx, got); err != nil {
		t.Errorf("sealed checkpoint does not verify: %v", err)
	}
	if _, err := s.Get(ctx, "in"); err != nil {
		t.Errorf("the checkpoint that had the name: %v (%s)", err, taken.ID)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(c.ID), PendingFile)); !os.IsNotExist(err) {
		t.Error("the pending marker stayed")
	}
	if _, err := os.Stat(unmarked); !os.IsNotExist(err) {
		t.Error("an unfinished, unmarked checkpoint stayed in staging")
	}
}

// An outgoing migration's images are transient: a start removes those a
// killed ckptd left, and keeps the logs beside them.
func TestInterruptedMigrationImagesGo(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	w, err := s.NewDumpWork(NewID())
	if err != nil {
		t.Fatal(err)
	}
	images := s.Layout().DumpImages(filepath.Base(w.Path))
	os.MkdirAll(images, 0o700)
	os.WriteFile(filepath.Join(images, "pages-1.img"), []byte("pages"), 0o600)
	os.WriteFile(filepath.Join(w.Path, "dump.log"), []byte("log"), 0o600)
	os.WriteFile(filepath.Join(w.Path, "cpuinfo.img"), []byte("cpu"), 0o600) // a pre-flight's
	s.Close()
	s = openStore(t, root)
	if _, err := os.Stat(images); !os.IsNotExist(err) {
		t.Error("a dead migration's images stayed")
	}
	if _, err := os.Stat(filepath.Join(w.Path, "cpuinfo.img")); !os.IsNotExist(err) {
		t.Error("a dead pre-flight's cpuinfo.img stayed")
	}
	if _, err := os.Stat(filepath.Join(w.Path, "dump.log")); err != nil {
		t.Errorf("its log went too: %v", err)
	}
}

// A pending checkpoint that cannot be sealed (its record is not valid) is
// quarantined with the reason, never deleted and never listed.
func TestUnsealablePendingIsQuarantined(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	id := NewID()
	dir, err := s.StageUnhashed(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pages-1.img"), []byte("pages"), 0o600)
	os.WriteFile(filepath.Join(dir, PendingFile), []byte(`{"id":"`+id+`","name":"../x"}`), 0o600)
	s.Close()
	s = openStore(t, root)
	if got := names(t, s); len(got) != 0 {
		t.Errorf("an unsealable checkpoint was listed: %v", got)
	}
	qs, err := s.ListQuarantined(ctx)
	if err != nil || len(qs) != 1 || qs[0].ID != id || !strings.Contains(qs[0].Reason, "sealing a pending checkpoint failed") {
		t.Fatalf("quarantine: %+v %v", qs, err)
	}
	if _, err := os.Stat(filepath.Join(root, "quarantine", id, "pages-1.img")); err != nil {
		t.Errorf("its images are gone: %v", err)
	}
}

// scrub runs one unpaced scrub pass and wants n checkpoints quarantined.
func scrub(t *testing.T, s *Store, n int) ScrubResult {
	t.Helper()
	res, err := s.Scrub(context.Background(), 0)
	if err != nil || len(res.Quarantined) != n {
		t.Fatalf("scrub: %+v %v, want %d quarantined", res, err, n)
	}
	return res
}

// Losing index.db loses no target: each target's record file puts it
// back. A record file newer than its index entry (a crash between the
// two) wins; an index entry without a file (an older store) gets one; a
// file that does not parse is left alone.
func TestLostIndexKeepsTargets(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	want := map[string]*Target{}
	for _, tg := range []*Target{
		{TargetRef: TargetRef{Kind: KindWorkload, Name: "w", PID: 42, Terminal: &Terminal{Key: "tty[88:3]", Rows: 30, Cols: 90}}, RestoredFrom: "abc", StartTime: 7},
		{TargetRef: TargetRef{Kind: KindProcess, PID: 43}},
		{TargetRef: TargetRef{Kind: KindContainer, Name: "default/ctr", PID: 44}, InDoubt: "restored stopped"},
	} {
		if err := s.PutTarget(ctx, tg); err != nil {
			t.Fatal(err)
		}
		want[tg.Key()] = tg
	}
	s.Close()
	if err := os.Remove(filepath.Join(root, "index.db")); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, root)
	got, err := s.ListTargets(ctx)
	if err != nil || len(got) != len(want) {
		t.Fatalf("after losing the index: %d targets, %v; want %d", len(got), err, len(want))
	}
	for _, g := range got {
		w := want[g.Key()]
		if w == nil || g.PID != w.PID || g.RestoredFrom != w.RestoredFrom || g.InDoubt != w.InDoubt || g.StartTime != w.StartTime ||
			(w.Terminal != nil) != (g.Terminal != nil) || (w.Terminal != nil && *g.Terminal != *w.Terminal) {
			t.Errorf("target %s came back as %+v, want %+v", g.Key(), g, w)
		}
	}

	// The file is written first: one newer than the index entry wins.
	newer := *want["workload/w"]
	newer.InDoubt = "the file's word"
	v, _ := json.Marshal(&newer)
	if err := writeFileAtomic(s.layout.TargetRecord(newer.Key()), v); err != nil {
		t.Fatal(err)
	}
	// An older store's entry has no file.
	if err := os.Remove(s.layout.TargetRecord("pid/43")); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(root, "targets", "garbage.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, root)
	if g, err := s.GetTarget(ctx, "workload/w"); err != nil || g.InDoubt != "the file's word" {
		t.Errorf("a newer record file: %+v %v", g, err)
	}
	if _, err := os.Stat(s.layout.TargetRecord("pid/43")); err != nil {
		t.Errorf("an index entry without a file got none: %v", err)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("an unreadable record was not left alone: %v", err)
	}
}

// A pending checkpoint whose images are a chain elsewhere (a pre-copy's
// rounds, under dumps/) is made whole from it and sealed at the next
// start, also when a crash cut the swap of the whole copy between its two
// renames; the rounds go.
func TestPendingChainIsMadeWhole(t *testing.T) {
	ctx := context.Background()
	for _, cut := range []bool{false, true} {
		root := t.TempDir()
		s := openStore(t, root)
		c := &Checkpoint{ID: NewID(), Name: "moved", Target: TargetRef{Kind: KindWorkload, Name: "w"}}
		if _, err := s.StageUnhashed(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		w, err := s.NewDumpWork(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		round := filepath.Join(w.Path, "rounds", "0000000000000002")
		os.MkdirAll(round, 0o700)
		os.WriteFile(filepath.Join(round, "core-1.img"), []byte("core"), 0o600)
		if err := s.MarkPendingChain(ctx, c, round); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkPendingChain(ctx, c, filepath.Join(root, "elsewhere")); err == nil {
			t.Error("a chain outside dumps/ was accepted")
		}
		if cut {
			if err := s.WholeFromChain(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			staging := s.Layout().Staging(c.ID)
			if err := os.Rename(staging, staging+".whole"); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()

		s = openStore(t, root)
		got, err := s.Get(ctx, "moved")
		if err != nil || got.Files["core-1.img"].Size != 4 {
			t.Fatalf("cut %v: sealed checkpoint %+v, %v", cut, got, err)
		}
		if err := s.Verify(ctx, got); err != nil {
			t.Errorf("cut %v: it does not verify: %v", cut, err)
		}
		if left, _ := os.ReadDir(s.Layout().StagingDir()); len(left) != 0 {
			t.Errorf("cut %v: staging keeps %v", cut, left)
		}
		if _, err := os.Stat(filepath.Join(w.Path, "rounds")); !os.IsNotExist(err) {
			t.Errorf("cut %v: the rounds stayed", cut)
		}
	}
}
