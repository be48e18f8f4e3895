package events

import "testing"

// A subscriber that does not read loses events, is told how many, and
// never blocks the publisher.
func TestSlowSubscriberLosesEventsNotThePublisher(t *testing.T) {
	h := NewHub()
	s, cancel := h.Subscribe()
	defer cancel()
	n := cap(s.C) + 10
	for range n {
		h.Publish(Event{Kind: Created})
	}
	if got := len(s.C); got != cap(s.C) {
		t.Errorf("%d events queued, want %d", got, cap(s.C))
	}
	if d := s.Dropped(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("dropped count not reset: %d", d)
	}
	cancel()
	h.Publish(Event{Kind: Sealed}) // after cancel: nothing more arrives
	if got := len(s.C); got != cap(s.C) {
		t.Errorf("an event reached a cancelled subscription")
	}
}
