package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Failed work dirs are kept for their logs, within bounds: the newest
// keepFailedWork, none older than maxFailedWorkAge; one in use or holding
// a paused-container marker is never pruned; success leaves nothing.
func TestFailedWorkIsBounded(t *testing.T) {
	s := openStore(t, t.TempDir())
	fail := func(age time.Duration, files ...string) string {
		w, err := s.NewDumpWork(NewID())
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(files, "dump.log") {
			os.WriteFile(filepath.Join(w.Path, f), []byte("why"), 0o600)
		}
		old := time.Now().Add(-age)
		os.Chtimes(w.Path, old, old)
		if err := w.Close(true); err != nil {
			t.Fatal(err)
		}
		return w.Path
	}
	ok, err := s.NewDumpWork(NewID())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ok.Path, "dump.log"), []byte("fine"), 0o600)
	if err := ok.Close(false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ok.Path); !os.IsNotExist(err) {
		t.Error("a successful dump's work dir stayed")
	}

	active, err := s.NewDumpWork(NewID())
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close(false)
	paused := fail(30*24*time.Hour, PausedFile)
	stale := fail(8 * 24 * time.Hour)
	var recent []string
	for i := range keepFailedWork + 5 {
		recent = append(recent, fail(time.Duration(keepFailedWork+5-i)*time.Minute))
	}
	for _, p := range []string{active.Path, paused} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("pruned %s: %v", p, err)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a failure older than the age bound was kept")
	}
	for i, p := range recent {
		_, err := os.Stat(p)
		if kept := err == nil; kept != (i >= 5) {
			t.Errorf("failure %d (of %d, oldest first): kept=%v", i, len(recent), kept)
		}
	}
}
