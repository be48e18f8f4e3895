package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// cause is err, or the client's leaving when that is what cut the
// connection.
func (m *outgoing) cause(ctx context.Context, err error) error {
	if ctx.Err() != nil && !m.restoring.Load() {
		return fmt.Errorf("the client gave up; nothing moved (%v): %w", err, ctx.Err())
	}
	return err
}

// fail ends a migration that went wrong. Before the commit the destination
// has nothing running and drops what it has. After it, the destination
// may run (or be about to run) the target: its copy is discarded only if
// the source's copy is confirmed running, or no copy might be left.
func (m *outgoing) fail(ctx context.Context, err error) error {
	if !m.restoring.Load() || m.sourceRuns(ctx) {
		m.conn.SendError(errors.New(errdefs.Message(err)))
		switch {
		case m.restored != nil && m.offer.Lazy:
			return fmt.Errorf("the source resumed from the moment it froze, after %s ended its copy: %w", m.conn.Peer(), err)
		case m.restored != nil:
			return fmt.Errorf("the source runs on and %s's copy is being stopped: %w", m.conn.Peer(), err)
		}
		return err
	}
	m.d.log.Error("migration failed after the commit and the source's copy is not running; the destination keeps its copy",
		"target", m.target.Key(), "to", m.conn.Peer(), "err", err)
	if serr := m.conn.Send(&migrate.Message{Kind: migrate.KindDone, Done: &migrate.Done{SourceStopped: true}}); serr != nil {
		return fmt.Errorf("%w; the source's copy is not running, and telling %s to keep its copy failed (%v): check it there", err, m.conn.Peer(), serr)
	}
	if m.restored != nil {
		return fmt.Errorf("%w; the source's copy is not running, so %s keeps the copy it runs as %s (pid %d)", err, m.conn.Peer(), m.restored.Name, m.restored.PID)
	}
	return fmt.Errorf("%w; the source's copy is not running, so %s keeps the copy it may still be restoring", err, m.conn.Peer())
}

// sourceRuns tells whether the source's copy is confirmed running: the
// same process, alive, no thread stopped; for a container, its task
// running and not paused.
func (m *outgoing) sourceRuns(ctx context.Context) bool {
	t := m.target
	if !proc.Alive(t.PID, t.StartTime) {
		return false
	}
	if t.Kind == store.KindContainer {
		r, err := container.RefFromName(t.Name)
		if err != nil {
			return false
		}
		info, err := m.d.ctrs.Get(ctx, r)
		return err == nil && info.Status == "running" && info.PID == t.PID
	}
	for _, s := range proc.ThreadStates(t.PID) {
		if s == 'T' || s == 't' {
			return false
		}
	}
	return true
}
