package store

import (
	"context"
	"os"
	"slices"
	"testing"
)

// member publishes a checkpoint durably as a member of group id, as a
// group's create does while its targets are frozen.
func member(t *testing.T, s *Store, name, group string) *Checkpoint {
	t.Helper()
	c := staged(t, s, name, "", map[string]string{"pages.img": name})
	c.Group = group
	if _, err := s.PublishDurable(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGroupCompleteOnlyWithItsRecord: members of a group whose record was
// never written are removed at the next start; a complete group survives
// it, is found by name and ID, and is removed with its members.
func TestGroupCompleteOnlyWithItsRecord(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := Open(ctx, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	done := &Group{ID: NewID(), Name: "done"}
	for _, n := range []string{"a-1", "b-1"} {
		c := member(t, s, n, done.ID)
		done.Members = append(done.Members, GroupMember{Checkpoint: c.ID, Name: c.Name, Target: c.Target})
	}
	if err := s.PutGroup(ctx, done); err != nil {
		t.Fatal(err)
	}
	member(t, s, "a-2", "cut") // ckptd died before this group's record
	member(t, s, "b-2", "cut")
	publish(t, s, "alone", "", map[string]string{"pages.img": "x"})
	bad := &Group{ID: NewID(), Name: "bad", Members: []GroupMember{{Checkpoint: "nosuch"}}}
	if err := s.PutGroup(ctx, bad); err == nil {
		t.Fatal("a group naming a checkpoint that is not its member was written")
	}
	s.Close()

	s = openStore(t, root)
	if got, want := names(t, s), []string{"a-1", "alone", "b-1"}; !slices.Equal(got, want) {
		t.Fatalf("after start-up: %v, want %v", got, want)
	}
	for _, ref := range []string{"done", done.ID} {
		g, err := s.GetGroup(ctx, ref)
		if err != nil || len(g.Members) != 2 {
			t.Fatalf("GetGroup(%s) = %+v, %v", ref, g, err)
		}
	}
	if taken, err := s.NameTaken(ctx, "done"); err != nil || !taken {
		t.Fatalf("a group's name is free for a checkpoint: %v %v", taken, err)
	}
	if _, err := s.GetGroup(ctx, "../x"); err == nil {
		t.Fatal("GetGroup took a path")
	}
	// A member in use (here held as a restore holds it): refused whole.
	_, release, err := s.Acquire(ctx, done.Members[1].Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveGroup(ctx, done); err == nil {
		t.Fatal("RemoveGroup removed a group whose member is in use")
	}
	release()
	for _, m := range done.Members {
		if _, err := s.WaitSealed(ctx, m.Checkpoint); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetGroup(ctx, "done"); err != nil {
		t.Fatalf("a refused RemoveGroup lost the group: %v", err)
	}
	removed, err := s.RemoveGroup(ctx, done)
	if err != nil || len(removed) != 2 {
		t.Fatalf("RemoveGroup: %v, %v", removed, err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"alone"}) {
		t.Fatalf("after RemoveGroup: %v", got)
	}
	if gs, _ := s.Groups(ctx); len(gs) != 0 {
		t.Fatalf("groups left: %+v", gs)
	}
}

// TestUnpublishTakesBackAMember: a member published for a group that then
// failed is gone from the index and the disk.
func TestUnpublishTakesBackAMember(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c := member(t, s, "a-1", "g")
	if err := s.Unpublish(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s); len(got) != 0 {
		t.Fatalf("listed after Unpublish: %v", got)
	}
	if _, err := os.Stat(s.Dir(c.ID)); !os.IsNotExist(err) {
		t.Fatalf("its directory: %v", err)
	}
	if err := s.Unpublish(ctx, c.ID); err == nil {
		t.Fatal("a second Unpublish succeeded")
	}
}

// TestGroupsWhileOneGoes: a record that goes between the listing of the
// directory and its read (a retention removing a group while ls runs) is
// skipped, not an error. A dangling link stands in for it: the glob finds
// it and the read finds nothing.
func TestGroupsWhileOneGoes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	g := &Group{ID: NewID(), Name: "kept"}
	c := member(t, s, "a-1", g.ID)
	g.Members = []GroupMember{{Checkpoint: c.ID, Name: c.Name, Target: c.Target}}
	if err := s.PutGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("gone", s.layout.Group("gone")); err != nil {
		t.Fatal(err)
	}
	gs, err := s.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "kept" {
		t.Fatalf("Groups = %v, %v; want the kept group alone", gs, err)
	}
}
