// Package keylock holds locks by name, taken in a context: a request whose
// client has gone stops waiting instead of being carried out later.
package keylock

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Locks is a set of named locks; the zero value is not usable, see New.
type Locks struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while locked
	refs int
}

// New returns an empty set.
func New() *Locks { return &Locks{m: map[string]*entry{}} }

// Lock takes key's lock, or gives up when ctx ends first.
func (l *Locks) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("waiting for %s: %w", key, context.Cause(ctx))
	}
}

// LockAll takes the locks of all keys, in sorted order so that two callers
// never wait for each other, or none of them when ctx ends first.
func (l *Locks) LockAll(ctx context.Context, keys []string) (unlock func(), err error) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	var held []func()
	unlockAll := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	for _, k := range keys {
		u, err := l.Lock(ctx, k)
		if err != nil {
			unlockAll()
			return nil, err
		}
		held = append(held, u)
	}
	return unlockAll, nil
}
