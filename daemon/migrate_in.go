package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/ingest"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// pageStreamWait bounds how long a destination waits for the source to
// open the page stream it announced.
const pageStreamWait = time.Minute

// doneWait bounds how long a destination that runs the target waits for
// the source's last word.
const doneWait = time.Minute

// lockWait bounds how long an incoming migration waits for its target's
// name, which local work may hold: it is refused rather than queued.
const lockWait = 5 * time.Second

// ServeMigration takes one incoming migration on its control connection:
// pre-flight, then the images (pages through a local CRIU page server),
// then the restore. Whatever fails, nothing of it is left here. The
// target's name is locked only once pre-flight passed, and every phase
// ends when the source makes no progress for the connection's idle time
// (peer_timeout): a quiet peer holds nothing for long.
func (d *Daemon) ServeMigration(ctx context.Context, c *migrate.Conn) error {
	msg, err := c.Recv(migrate.KindOffer)
	if err != nil {
		c.SendError(err) // a malformed offer: the source hears why
		return err
	}
	o := msg.Offer
	ref, err := d.restoreTarget(&store.Checkpoint{Name: "incoming", Target: o.Target}, o.Name, "")
	if err != nil {
		return refuse(c, []string{errdefs.Message(err)})
	}
	in := &incoming{d: d, conn: c, offer: o, ref: ref, id: store.NewID(), budget: incomingBudget(o)}
	work, err := d.store.NewDumpWork(in.id)
	if err != nil {
		c.SendError(err)
		return err
	}
	in.work = work.Path
	if problems := d.preflight(ctx, o, ref, in.work); len(problems) > 0 {
		return errors.Join(refuse(c, problems), work.Close(false))
	}
	unlock, err := in.admit(ctx)
	if err != nil {
		return errors.Join(refuse(c, []string{errdefs.Message(err)}), work.Close(false))
	}
	defer unlock()
	d.log.Info("incoming migration", "peer", c.Peer(), "target", o.Target.Key(), "as", ref.Key(), "bytes", o.MemoryBytes)
	err = in.run(ctx)
	d.closeWork(work, &err) // its logs are kept only when it failed
	if err != nil {
		c.SendError(errors.New(errdefs.Message(err)))
		return fmt.Errorf("%s from %s: %w", o.Target.Key(), c.Peer(), err)
	}
	return nil
}

// incomingBudget is what a migration's source may send here: its offer's
// memory with room to grow, and the other images; a pre-copy's rounds
// together up to twice that.
func incomingBudget(o *migrate.Offer) int64 {
	mem := o.MemoryBytes + o.MemoryBytes/4
	if o.Rounds > 0 {
		mem *= 2
	}
	return mem + imageSlack
}

// diskBudget is what a migration may take of the disk: what its source
// sends, and for a pre-copy the whole checkpoint rewritten from its
// rounds.
func diskBudget(o *migrate.Offer, sent int64) int64 {
	if o.Rounds > 0 {
		return sent + o.MemoryBytes + o.MemoryBytes/4
	}
	return sent
}

// admit promises the migration its budget of the free space shared by
// every writer from outside, and takes its target's name if local work
// frees it soon; the name is checked again under the lock.
func (in *incoming) admit(ctx context.Context) (unlock func(), err error) {
	release, err := in.d.store.Reserve(diskBudget(in.offer, in.budget))
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	unlockName, err := in.d.locks.Lock(lctx, in.ref.Key())
	if err != nil {
		release()
		return nil, fmt.Errorf("%s is busy here (local work holds it): %w", in.ref, errdefs.ErrFailedPrecondition)
	}
	if err := in.d.targetFree(ctx, in.offer, in.ref); err != nil {
		unlockName()
		release()
		return nil, err
	}
	return func() { unlockName(); release() }, nil
}

func refuse(c *migrate.Conn, problems []string) error {
	if err := c.Send(&migrate.Message{Kind: migrate.KindReport, Report: &migrate.Report{Problems: problems}}); err != nil {
		return err
	}
	return fmt.Errorf("pre-flight refused: %s", strings.Join(problems, "; "))
}

// incoming is one migration on its destination.
type incoming struct {
	d     *Daemon
	conn  *migrate.Conn
	offer *migrate.Offer
	ref   store.TargetRef
	id    string
	work  string // page server and restore logs
	// budget is what the source may write here; a source sending more is
	// cut off.
	budget int64
	pages  atomic.Int64 // page stream bytes received
}

func (in *incoming) run(ctx context.Context) (err error) {
	if in.offer.Lazy {
		return in.runLazy(ctx)
	}
	d := in.d
	dir, err := d.store.StageUnhashed(ctx, in.id)
	if err != nil {
		return err
	}
	published := false
	defer func() {
		// A pre-copy's rounds go in any case: whole or not, they are
		// pages, not logs.
		if rerr := os.RemoveAll(filepath.Join(in.work, "rounds")); rerr != nil {
			d.log.Warn("incoming migration: clean up rounds", "err", rerr)
		}
		if err == nil {
			return
		}
		var cerr error
		if published {
			_, cerr = d.store.Remove(context.WithoutCancel(ctx), []string{in.id}, false)
		} else {
			cerr = d.store.Discard(context.WithoutCancel(ctx), in.id)
		}
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends a page server still waiting
	report := &migrate.Report{}
	var pagesDone chan error
	if in.offer.PageStream {
		report.Streams = in.d.pageStreams(in.offer.Streams)
		token, wait, withdraw, err := in.conn.ExpectPages(report.Streams)
		if err != nil {
			return err
		}
		defer withdraw()
		report.Token = token
		pagesDone = make(chan error, 1)
		go func() { pagesDone <- in.receivePages(ctx, wait, report.Streams, dir) }()
	}
	if err := in.conn.Send(&migrate.Message{Kind: migrate.KindReport, Report: report}); err != nil {
		return err
	}
	// The source hears from us while we wait for pages, restore, and
	// wait for its word.
	defer in.conn.Beat()()
	src, images, err := in.receiveFiles(dir)
	if err != nil {
		return err
	}
	committed := time.Now()
	if pagesDone != nil {
		if err := <-pagesDone; err != nil {
			return err
		}
	}
	pagesIn := time.Since(committed)
	c, err := in.record(ctx, src, images)
	if err != nil {
		return err
	}
	// The images are whole: from here a crash must not lose them, since the
	// restored target will name this checkpoint as its origin. A pre-copy's
	// are a chain of rounds, made whole out of the downtime (see keep), or
	// by the next start.
	if images == dir {
		err = d.store.MarkPending(ctx, c)
	} else {
		err = d.store.MarkPendingChain(ctx, c, images)
	}
	if err != nil {
		return err
	}
	t, warnings, err := in.restore(ctx, c, images, &published)
	if err != nil {
		return err
	}
	d.log.Debug("incoming migration phases", "target", t.Key(), "page_server_after_commit", pagesIn, "restored_after_commit", time.Since(committed))
	if err := in.conn.Send(&migrate.Message{Kind: migrate.KindRestored, Restored: &migrate.Restored{
		Checkpoint: c.ID, Name: in.ref.Name, PID: t.PID, Warnings: warnings,
	}}); err != nil {
		d.log.Warn("incoming migration: the source may not know it runs here", "target", t.Key(), "err", err)
	}
	done, err := in.awaitDone(ctx, t)
	if err != nil {
		return err
	}
	// Out of the downtime: a fenced tree runs again by now.
	if !published {
		published = in.keep(ctx, c, t)
	}
	if published && done != nil && done.Stats != nil {
		if err := d.store.Finish(ctx, c.ID, done.Stats, in.work); err != nil && !errdefs.IsNotFound(err) {
			d.log.Warn("record the source's CRIU statistics", "id", c.ID, "err", err)
		}
	}
	return nil
}

// record is the checkpoint this host keeps of what it received in dir:
// the source's description as the boundary lets it in (package ingest),
// under a name free here, with where it came from. A container spec this
// host's policy refuses fails the migration, and the source resumes.
func (in *incoming) record(ctx context.Context, src *store.Checkpoint, dir string) (*store.Checkpoint, error) {
	name, err := in.d.checkpointName(ctx, "", src.Target)
	if err != nil {
		return nil, err
	}
	// Its published ports move with it.
	host := ingest.DefaultHost
	host.PublishPorts = true
	c, dropped := ingest.Record(src, host)
	c.ID, c.Name, c.Files = in.id, name, nil // its files are summed here
	c.Migration = &store.Migration{Peer: in.conn.Peer(), Received: time.Now().UTC()}
	more, err := in.d.admitSpec(dir, c)
	if err != nil {
		return nil, err
	}
	c.Dropped = append(dropped, more...)
	return c, in.d.admitCreds(dir, c)
}

// restore runs the received checkpoint. It arrived over an authenticated,
// integrity-checked stream, so it is not verified again: a process tree
// restores straight from staging and is published once it runs, out of
// the downtime (see keep); a container's files are published first (a
// pre-copy's made whole), since containerd restores from the published
// directory.
func (in *incoming) restore(ctx context.Context, c *store.Checkpoint, staging string, published *bool) (*store.Target, []string, error) {
	d := in.d
	trusted := func() error { return nil }
	if in.ref.Kind == store.KindContainer {
		// A pre-copy's chain of rounds is made whole first, inside the
		// downtime: containerd restores from one published directory.
		if err := d.store.WholeFromChain(ctx, c.ID); err != nil {
			return nil, nil, err
		}
		if err := d.store.Publish(ctx, c); err != nil {
			return nil, nil, err
		}
		*published = true
		return d.restoreContainer(ctx, c, in.ref, trusted, in.offer.Fenced)
	}
	t, err := d.restore(ctx, c, in.ref, staging, trusted, &restoreHow{Stopped: in.offer.Fenced})
	return t, nil, err
}

// keep publishes a restored tree's checkpoint: hashing and syncing its
// pages takes seconds per GiB, which the source must not wait for. If it
// fails, the tree runs on without a checkpoint here.
func (in *incoming) keep(ctx context.Context, c *store.Checkpoint, t *store.Target) bool {
	ctx = context.WithoutCancel(ctx)
	err := in.d.store.WholeFromChain(ctx, c.ID)
	if err == nil {
		err = in.d.store.Publish(ctx, c)
	}
	if err != nil {
		in.d.log.Error("incoming migration: keeping the checkpoint failed; the target runs", "target", t.Key(), "err", err)
		if derr := in.d.store.Discard(ctx, c.ID); derr != nil {
			in.d.log.Error("discard", "id", c.ID, "err", derr)
		}
		return false
	}
	return true
}

// awaitDone hears the source out and settles our copy. The source gave
// up after all (it timed out waiting for us, and resumed): our copy goes,
// and with it the checkpoint (the error makes run remove it). The source
// confirms its copy gone: a fenced copy resumes. Its word is lost, or it
// could not stop its copy: a fenced copy stays stopped, in doubt, until an
// operator settles it (migrate --resolve); an unfenced one runs on, as
// both may.
func (in *incoming) awaitDone(ctx context.Context, t *store.Target) (*migrate.Done, error) {
	in.conn.SetDeadline(time.Now().Add(doneWait))
	msg, err := in.conn.Recv(migrate.KindDone)
	fenced := in.offer.Fenced
	switch {
	case errors.Is(err, migrate.ErrRemote):
		in.d.log.Warn("source resumed its copy after all; stopping ours", "target", t.Key(), "err", err)
		if kerr := proc.Signal(t.PID, t.StartTime, unix.SIGKILL); kerr != nil && !errors.Is(kerr, proc.ErrGone) {
			return nil, errors.Join(err, fmt.Errorf("stop our copy (pid %d): %w", t.PID, kerr))
		}
		return nil, err
	case err == nil && (msg.Done.SourceStopped || !fenced):
		in.d.log.Info("incoming migration done", "target", t.Key(), "pid", t.PID, "source_stopped", msg.Done.SourceStopped)
		if fenced {
			if err := in.d.resumeTree(t); err != nil {
				return nil, err
			}
			t.InDoubt = ""
			return msg.Done, in.d.store.PutTarget(context.WithoutCancel(ctx), t)
		}
		return msg.Done, nil
	case !fenced:
		in.d.log.Warn("source's last word lost; if it resumed its copy, both run", "target", t.Key(), "err", err)
		return nil, nil
	}
	why := "the source did not confirm that its copy is gone"
	if err != nil {
		why += ": " + err.Error()
	} else {
		why += ": it reports its copy still there"
	}
	in.d.log.Error("incoming migration in doubt: our copy stays stopped; settle it with ckptctl migrate --resolve", "target", t.Key(), "pid", t.PID, "why", why)
	t.InDoubt = fmt.Sprintf("migrated from %s; %s", in.conn.Peer(), why)
	return nil, in.d.store.PutTarget(context.WithoutCancel(ctx), t)
}
