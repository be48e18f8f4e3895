package keylock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLockExcludesAndGivesUp(t *testing.T) {
	l := New()
	unlock, err := l.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := l.Lock(context.Background(), "b"); err != nil {
		t.Fatalf("another key waited: %v", err)
	} else {
		u()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held key: %v, want the context's error", err)
	}
	unlock()
	u, err := l.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	u()
	if len(l.m) != 0 {
		t.Errorf("entries left after every unlock: %v", l.m)
	}
}

// TestLockAll: overlapping sets in opposite orders never deadlock, and a
// cancelled LockAll releases what it took.
func TestLockAll(t *testing.T) {
	l := New()
	done := make(chan struct{})
	for _, keys := range [][]string{{"x", "y", "x"}, {"y", "x"}} {
		go func() {
			for range 1000 {
				u, err := l.LockAll(context.Background(), keys)
				if err != nil {
					t.Error(err)
					return
				}
				u()
			}
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	hold, _ := l.Lock(context.Background(), "y")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.LockAll(ctx, []string{"x", "y"}); err == nil {
		t.Fatal("LockAll took a held key")
	}
	hold()
	u, err := l.LockAll(context.Background(), []string{"x", "y"})
	if err != nil {
		t.Fatalf("x was not released by the cancelled LockAll: %v", err)
	}
	u()
}
