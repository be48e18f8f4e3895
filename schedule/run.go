package schedule

import (
	"context"
	"time"

	"github.com/ckptd/ckptd/events"
)

// loop fires e's ticks until its policy is replaced or removed, or the
// scheduler closes. A tick that finds the previous run going is skipped
// and counted; after downtime the next tick comes at once, then the
// interval resumes from it.
func (s *Scheduler) loop(e *entry) {
	defer s.wg.Done()
	defer close(e.exited)
	s.mu.Lock()
	next := e.st.LastRun.Add(e.st.Every)
	if e.st.LastRun.IsZero() {
		next = time.Now().Add(e.st.Every)
	}
	s.mu.Unlock()
	done := make(chan struct{}, 1)
	running := false
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-s.ctx.Done():
			t.Stop()
			if running {
				<-done
			}
			return
		case <-e.quit:
			t.Stop()
			if running {
				<-done
			}
			return
		case <-done:
			t.Stop()
			running = false
			continue
		case <-t.C:
		}
		if running {
			s.update(e, func(st *Status) { st.Skipped++ })
			s.log.Warn("scheduled checkpoint skipped: the previous one is still running", "target", e.st.Key)
			s.events.Publish(events.Event{Kind: events.Skipped, Target: e.st.Key})
		} else {
			running = true
			go func() { s.run(e); done <- struct{}{} }()
		}
		next = next.Add(e.st.Every)
		if now := time.Now(); next.Before(now) {
			next = now.Add(e.st.Every) // no burst after a pause
		}
	}
}

// run takes one scheduled checkpoint and applies the retention policy.
func (s *Scheduler) run(e *entry) {
	started := time.Now()
	s.update(e, func(st *Status) { st.Running = true })
	id, err := s.cp.Snapshot(s.ctx, e.st.Policy)
	s.update(e, func(st *Status) {
		st.Running, st.LastRun = false, started
		if err != nil {
			st.Failures++
			st.LastError = err.Error()
			return
		}
		st.Runs++
		st.LastCheckpoint, st.LastError = id, ""
	})
	if err != nil {
		s.log.Error("scheduled checkpoint failed", "target", e.st.Key, "err", err)
		s.events.Publish(events.Event{Kind: events.Failed, Op: "scheduled", Target: e.st.Key, Err: err.Error()})
		return
	}
	s.log.Info("scheduled checkpoint", "target", e.st.Key, "id", id, "took", time.Since(started))
	s.prune(e)
}

// prune removes what the policy no longer keeps, and logs it.
func (s *Scheduler) prune(e *entry) {
	cands, err := s.cp.Candidates(s.ctx, e.st.Key)
	if err != nil {
		s.log.Error("retention: list checkpoints", "target", e.st.Key, "err", err)
		return
	}
	drop := e.st.Retention.Prunable(cands)
	if len(drop) == 0 {
		return
	}
	removed, err := s.cp.Prune(s.ctx, drop)
	if len(removed) > 0 {
		s.log.Info("retention removed checkpoints", "target", e.st.Key, "ids", removed)
	}
	if err != nil {
		s.log.Error("retention: remove checkpoints", "target", e.st.Key, "err", err)
	}
}

// update changes e's status and stores it; a failure to store is logged,
// since the tick itself happened.
func (s *Scheduler) update(e *entry, change func(*Status)) {
	s.mu.Lock() // held while storing: Remove must not be undone by a late update
	defer s.mu.Unlock()
	change(&e.st)
	if s.entries[e.st.Key] != e {
		return // replaced or removed meanwhile: its record is not ours to write
	}
	if err := s.save(context.WithoutCancel(s.ctx), e.st); err != nil {
		s.log.Error("store schedule status", "target", e.st.Key, "err", err)
	}
}
