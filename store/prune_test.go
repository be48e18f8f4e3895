package store

import (
	"context"
	"os"
	"slices"
	"testing"
)

// Prune removes checkpoints from the middle of a chain: the survivors'
// lineage skips them, in the index and in checkpoint.json; a held
// checkpoint, or one whose child is held, stays.
func TestPruneKeepsLineage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a := publish(t, s, "a", "", map[string]string{"x": "a"})
	b := publish(t, s, "b", a.ID, map[string]string{"x": "b"})
	c := publish(t, s, "c", b.ID, map[string]string{"x": "c"})
	d := publish(t, s, "d", c.ID, map[string]string{"x": "d"})
	publish(t, s, "e", d.ID, map[string]string{"x": "e"})

	_, releaseE, err := s.Acquire(ctx, "e") // d's child is read: d stays
	if err != nil {
		t.Fatal(err)
	}
	removed, err := s.Prune(ctx, []string{b.ID, c.ID, d.ID})
	releaseE()
	if err != nil || !slices.Equal(removed, []string{b.ID, c.ID}) {
		t.Fatalf("prune: %v %v, want b and c", removed, err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"a", "d", "e"}) {
		t.Fatalf("left: %v", got)
	}
	got, err := s.Get(ctx, "d")
	if err != nil || got.Parent != a.ID {
		t.Errorf("d's parent in the index: %+v %v, want %s", got, err, a.ID)
	}
	if rec, err := readMetadata(s.Dir(d.ID)); err != nil || rec.Parent != a.ID {
		t.Errorf("d's parent in checkpoint.json: %+v %v", rec, err)
	}
	for _, id := range []string{b.ID, c.ID} {
		if _, err := os.Stat(s.Dir(id)); !os.IsNotExist(err) {
			t.Errorf("pruned %s still on disk: %v", id, err)
		}
	}
	if err := s.Verify(ctx, got); err != nil {
		t.Errorf("verify d after the prune: %v", err)
	}
	if removed, err := s.Prune(ctx, []string{d.ID}); err != nil || len(removed) != 1 {
		t.Errorf("prune d once e is released: %v %v", removed, err)
	}
	if got, _ := s.Get(ctx, "e"); got == nil || got.Parent != a.ID {
		t.Errorf("e's parent: %+v", got)
	}
}
