// Package events carries what happens in ckptd (created, sealed, restored,
// removed by retention, failed...) to whoever listens: `ckptctl events`
// and the metrics.
package events

import (
	"sync"
	"time"
)

// Kinds of event.
const (
	Created        = "created"  // a checkpoint was committed; Frozen is the target's downtime
	Sealed         = "sealed"   // a checkpoint's files are hashed and on disk
	Restored       = "restored" // a checkpoint runs again
	Removed        = "removed"  // by rm
	Pruned         = "pruned"   // by a schedule's retention
	Quarantined    = "quarantined"
	Migrated       = "migrated"
	Imported       = "imported"
	Failed         = "failed"     // Op says what failed, Err why
	Skipped        = "skipped"    // a scheduled tick found the previous run going
	ScrubPassEnded = "scrub"      // Bytes read
	Hibernated     = "hibernated" // a workload that scales to zero went to sleep
	Woken          = "woken"      // and woke: Duration is the wake's
)

// Event is one thing that happened.
type Event struct {
	Time       time.Time     `json:"time"`
	Kind       string        `json:"kind"`
	Op         string        `json:"op,omitempty"` // for failures: create, restore, migrate, scheduled
	Target     string        `json:"target,omitempty"`
	Checkpoint string        `json:"checkpoint,omitempty"`
	Name       string        `json:"name,omitempty"`
	Duration   time.Duration `json:"duration,omitempty"`
	Frozen     time.Duration `json:"frozen,omitempty"`
	Bytes      int64         `json:"bytes,omitempty"`
	Err        string        `json:"error,omitempty"`
}

// Hub fans events out to subscribers. A subscriber too slow to keep up
// loses events (and is told how many) rather than slowing ckptd.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
}

// Sub is one subscription.
type Sub struct {
	C       chan Event
	mu      sync.Mutex
	dropped int
}

// Dropped returns and resets how many events this subscriber missed.
func (s *Sub) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

func NewHub() *Hub { return &Hub{subs: map[*Sub]struct{}{}} }

// Publish sends e to every subscriber without blocking.
func (h *Hub) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.C <- e:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}

// Subscribe starts a subscription; cancel ends it.
func (h *Hub) Subscribe() (s *Sub, cancel func()) {
	s = &Sub{C: make(chan Event, 256)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}
}
