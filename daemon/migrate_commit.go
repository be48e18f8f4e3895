package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// commit runs while the source is frozen: it sends the images written
// here, hands over the record, and waits for the destination to run it.
func (m *outgoing) commit(c *store.Checkpoint, images string) error {
	if !proc.Alive(m.target.PID, m.target.StartTime) {
		return fmt.Errorf("pid %d is no longer %s: it ended and its PID was reused: %w", m.target.PID, m.target.Key(), errdefs.ErrFailedPrecondition)
	}
	m.mark("dump")
	if err := m.sendFiles(images); err != nil {
		return err
	}
	m.mark("files")
	c.Created = time.Now().UTC()
	if !m.uncut() {
		return fmt.Errorf("the client gave up before the commit: %w", context.Canceled)
	}
	m.commitSent.Store(true)
	if err := m.conn.Send(&migrate.Message{Kind: migrate.KindCommit, Commit: &migrate.Commit{Checkpoint: c}}); err != nil {
		return err
	}
	m.restoring.Store(true)
	m.progress("restore")
	timeout := m.req.RestoreTimeout
	if timeout <= 0 {
		timeout = DefaultRestoreTimeout
	}
	// Until the answer, and while CRIU finishes after it, shutdown waits.
	m.releaseHold = m.d.holdCommitted(m.id, time.Now().Add(timeout+time.Minute))
	m.conn.SetDeadline(time.Now().Add(timeout))
	msg, err := m.conn.Recv(migrate.KindRestored)
	m.conn.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("%s did not restore it: %w", m.conn.Peer(), err)
	}
	m.restored = msg.Restored
	m.downtime = time.Since(m.frozen)
	m.mark("restore")
	return nil
}
