package store

import (
	"context"
	"testing"
	"time"
)

// TestPersisted: entries list in the order they were marked, a put
// replaces its target's entry, they survive a reopen, marking one again
// keeps its place, and Unpersist forgets one.
func TestPersisted(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	if ps, err := s.Persisted(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("a new store lists %v, %v", ps, err)
	}
	now := time.Now().UTC()
	a := Persisted{Target: TargetRef{Kind: KindWorkload, Name: "a"}, Since: now.Add(time.Second)}
	b := Persisted{Target: TargetRef{Kind: KindContainer, Name: "default/b"}, Since: now}
	for _, p := range []Persisted{a, b} {
		if err := s.PutPersisted(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	a.Checkpoint, a.Boot = "c1", s.Boot()
	if err := s.PutPersisted(ctx, a); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, root)
	ps, err := s.Persisted(ctx)
	if err != nil || len(ps) != 2 || ps[0].Target.Name != "default/b" || ps[1].Checkpoint != "c1" || ps[1].Boot == "" {
		t.Fatalf("after a reopen: %+v, %v", ps, err)
	}
	again, err := s.Persist(ctx, b.Target, "g")
	if err != nil || !again.Since.Equal(b.Since) || again.Group != "g" {
		t.Fatalf("marked again: %+v, %v; want its place (%s) kept", again, err, b.Since)
	}
	if err := s.Unpersist(ctx, b.Target.Key()); err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.Persisted(ctx); len(ps) != 1 || ps[0].Target.Name != "a" {
		t.Fatalf("after Unpersist: %+v", ps)
	}
}
