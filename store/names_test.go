package store

import (
	"context"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestNextNameOnlyGrows: a number freed by rm (or retention) is never
// handed out again, and names from a store older than the record count.
func TestNextNameOnlyGrows(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	next := func(base, want string) {
		t.Helper()
		got, err := s.NextName(ctx, base)
		if err != nil || got != want {
			t.Fatalf("NextName(%q) = %q, %v; want %q", base, got, err, want)
		}
	}
	next("job", "job-1")
	publish(t, s, "job-1", "", map[string]string{"a": "1"})
	publish(t, s, "job-2", "", map[string]string{"a": "2"})
	next("job", "job-3")
	if _, err := s.Remove(ctx, []string{"job-1", "job-2"}, false); err != nil {
		t.Fatal(err)
	}
	next("job", "job-3")
	next("jo", "jo-1") // another base, though a prefix

	publish(t, s, "mine", "", map[string]string{"a": "3"}) // no number
	publish(t, s, "web-x-9", "", map[string]string{"a": "4"})
	next("web-x", "web-x-10")
	next("web", "web-1")

	// A name indexed by an older ckptd, which kept no numbers.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).Put([]byte("old-7"), []byte("someid"))
	}); err != nil {
		t.Fatal(err)
	}
	next("old", "old-8")
}

func TestSplitNumbered(t *testing.T) {
	for _, tc := range []struct {
		name string
		base string
		n    uint64
		ok   bool
	}{
		{"job-1", "job", 1, true},
		{"a-b-12", "a-b", 12, true},
		{"job-", "", 0, false},
		{"-3", "", 0, false},
		{"job-x", "", 0, false},
		{"job", "", 0, false},
		{"job-99999999999999999999999", "", 0, false},
	} {
		base, n, ok := splitNumbered(tc.name)
		if base != tc.base || n != tc.n || ok != tc.ok {
			t.Errorf("splitNumbered(%q) = %q, %d, %v; want %q, %d, %v", tc.name, base, n, ok, tc.base, tc.n, tc.ok)
		}
	}
}
