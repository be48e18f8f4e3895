package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Post-copy (migrate --lazy). The source dumps everything but its memory
// and stays frozen; the destination restores and runs the target at once
// while a `criu lazy-pages` daemon there fetches the pages, on fault and
// in the background, from the source's CRIU through the page stream.
// Once the daemon has every page, the source's CRIU kills the source.
//
// A break before that ends in one copy, never two: the destination kills
// its copy before its daemon lets go of the copy's memory (missing pages
// would read as zeros), and only then does the source's CRIU see the break
// and resume the source from the moment it froze. Both tunnels hold their
// CRIU end open (migrate.Tunnel.Hold) so that ckptd, not CRIU, decides
// when that happens. If the source host dies first, the workload is lost.

// lazyGrace is added to the peer timeouts before a source that lost its
// destination resumes, for the destination to have ended its copy.
const lazyGrace = 5 * time.Second

// dumpLazy is the source's side: CRIU serves the pages on a socket joined
// to the page stream from the commit until the destination has them all.
func (m *outgoing) dumpLazy(ctx context.Context, c *store.Checkpoint, report *migrate.Report, images, work string) (*store.DumpStats, error) {
	restorePipeMax, err := m.d.criu.Helpers.RaisePipeMax()
	if err != nil {
		return nil, err
	}
	defer restorePipeMax()
	// From the commit on, the client leaving cuts nothing.
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	ps, err := m.openPages(ctx, tctx, report, &migrate.Tunnel{Hold: true})
	if err != nil {
		return nil, err
	}
	defer ps.close()
	local, theirs, tunnelDone := ps.local, ps.theirs, ps.done
	// CRIU's lazy page server takes an end of stream for success, and then
	// kills the tree: closing our end resets it instead, whoever closes it
	// (ckptd dying too), and CRIU then resumes the tree.
	if err := local.SetLinger(0); err != nil {
		return nil, err
	}
	var broke atomic.Pointer[error] // why watchLazy ended the stream
	grace := max(m.conn.Idle(), time.Duration(report.IdleMs)*time.Millisecond) + lazyGrace
	dumped := make(chan struct{})
	defer close(dumped)

	opts := withTerminal(m.opts, c.Target)
	m.freeze()
	res, err := m.d.dumper.Dump(ctx, dumper.Request{
		PID: m.target.PID, Dir: images, WorkDir: work, Options: opts,
		PageServer: theirs, Lazy: true,
		Commit: func() error {
			err := m.commit(c, images)
			if err == nil {
				m.progress("post-copy")
				go func() {
					if why := m.watchLazy(tunnelDone, local, grace, dumped); why != nil {
						broke.Store(&why)
					}
				}()
				return nil
			}
			// CRIU resumes the tree when it hears of the failure. A
			// destination that had the commit may run a copy whose answer
			// was lost: it gets the grace to end it first.
			if m.commitSent.Load() {
				m.resetLazy(err, local, grace, dumped)
			}
			return err
		},
	})
	if why := broke.Load(); err != nil && why != nil {
		return nil, fmt.Errorf("post-copy broke before every page moved: %w", *why)
	}
	if err != nil {
		return nil, err
	}
	return convertStats(res.Stats), nil
}

// watchLazy ends the page stream on CRIU's side when the destination is
// lost while pages still move: at once when it says it ended its copy,
// after grace when it went silent or the stream broke. CRIU then resumes
// the source. It gives up watching once the dump has returned.
func (m *outgoing) watchLazy(tunnelDone <-chan error, local net.Conn, grace time.Duration, dumped <-chan struct{}) error {
	word := make(chan error, 1)
	go func() {
		_, err := m.conn.Next() // the destination says nothing unless it fails
		if err == nil {
			err = errors.New("protocol: a message during post-copy")
		}
		word <- err
	}()
	var why error
	select {
	case <-dumped:
		return nil
	case why = <-word:
	case why = <-tunnelDone:
		if why == nil {
			return nil // both ends closed: CRIU finished
		}
	}
	m.resetLazy(why, local, grace, dumped)
	return why
}

// resetLazy resets CRIU's end of the page stream, which resumes the
// source: at once when the destination said it failed, after grace
// otherwise, unless the dump returned first.
func (m *outgoing) resetLazy(why error, local net.Conn, grace time.Duration, dumped <-chan struct{}) {
	if !errors.Is(why, migrate.ErrRemote) {
		m.d.log.Warn("post-copy: destination lost; the source resumes after the grace", "target", m.target.Key(), "grace", grace, "err", why)
		select {
		case <-dumped:
			return
		case <-time.After(grace):
		}
	}
	m.d.log.Warn("post-copy broke before every page moved; the source resumes", "target", m.target.Key(), "page_bytes_sent", m.bytes(), "err", why)
	local.Close()
}

// runLazy is the destination's side: the images come without the lazy
// pages, the target runs at once, and the daemon fills its memory. Nothing
// is kept but the running target: without their pages the images restore
// nothing.
func (in *incoming) runLazy(ctx context.Context) (err error) {
	d := in.d
	dir, err := d.store.StageUnhashed(ctx, in.id)
	if err != nil {
		return err
	}
	defer func() {
		if derr := d.store.Discard(context.WithoutCancel(ctx), in.id); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
	}()
	streams := in.d.pageStreams(in.offer.Streams)
	token, wait, withdraw, err := in.conn.ExpectPages(streams)
	if err != nil {
		return err
	}
	defer withdraw()
	report := &migrate.Report{Token: token, IdleMs: in.conn.Idle().Milliseconds(), Streams: streams}
	if err := in.conn.Send(&migrate.Message{Kind: migrate.KindReport, Report: report}); err != nil {
		return err
	}
	defer in.conn.Beat()()
	remotes, err := awaitPageStream(ctx, wait, streams)
	if err != nil {
		return err
	}
	defer closeAll(remotes)
	src, images, err := in.receiveFiles(dir)
	if err != nil {
		return err
	}
	c, err := in.record(ctx, src, images)
	if err != nil {
		return err
	}
	mine, theirs, err := migrate.LoopbackPair()
	if err != nil {
		return err
	}
	defer mine.Close()
	defer theirs.Close()
	tunnel := &migrate.Tunnel{Hold: true, Limit: in.budget}
	tctx, stopTunnel := context.WithCancel(ctx)
	defer stopTunnel()
	tunnelDone := make(chan error, 1)
	go func() { tunnelDone <- tunnel.Join(tctx, mine, remotes, false) }()

	how := &restoreHow{LazyPages: theirs, LazyLog: in.work + "/lazy-pages.log"}
	t, err := d.restore(ctx, c, in.ref, images, func() error { return nil }, how)
	if err != nil {
		return err
	}
	theirs.Close()
	if err := in.conn.Send(&migrate.Message{Kind: migrate.KindRestored, Restored: &migrate.Restored{Name: in.ref.Name, PID: t.PID}}); err != nil {
		return errors.Join(in.endLazyCopy(t, how.lazy, mine, err), err)
	}
	return in.awaitPages(t, how.lazy, tunnelDone, mine)
}

// awaitPages waits until the lazy-pages daemon has every page, then for
// the source's last word. A break first ends our copy before the daemon.
func (in *incoming) awaitPages(t *store.Target, lazy *criu.LazyPages, tunnelDone <-chan error, local net.Conn) error {
	word := make(chan error, 1)
	go func() {
		msg, err := in.conn.Recv(migrate.KindDone)
		if err == nil && !msg.Done.SourceStopped {
			err = errors.New("the source reports its copy still there")
		}
		word <- err
	}()
	gotWord := false
	for {
		select {
		case <-lazy.Exited():
			if err := lazy.End(); err != nil {
				return in.endLazyCopy(t, lazy, local, err)
			}
			in.d.log.Info("post-copy: every page is here", "target", t.Key(), "pid", t.PID)
			t.Filling = ""
			if err := in.d.store.PutTarget(context.Background(), t); err != nil {
				in.d.log.Error("post-copy: record the target filled", "target", t.Key(), "err", err)
			}
			if !gotWord {
				if err := waitWord(word); err != nil {
					// The daemon had the source's answer to its close, so
					// the source's CRIU ends the source.
					in.d.log.Warn("post-copy: the source's last word is lost; its CRIU ends it, since every page is here", "target", t.Key(), "err", err)
				}
			}
			return nil
		case err := <-tunnelDone:
			if err != nil {
				return in.endLazyCopy(t, lazy, local, err)
			}
			tunnelDone = nil // the source's CRIU closed after its answer
		case err := <-word:
			if err == nil {
				err = waitExit(lazy)
			}
			if err != nil {
				return in.endLazyCopy(t, lazy, local, err)
			}
			gotWord, word = true, nil
		}
	}
}

// endLazyCopy ends our copy, then the daemon, then the stream: the
// source's CRIU sees the break last, and resumes the source.
func (in *incoming) endLazyCopy(t *store.Target, lazy *criu.LazyPages, local net.Conn, why error) error {
	if err := killTree(t); err != nil {
		in.d.log.Error("post-copy: end our copy", "target", t.Key(), "err", err)
	} else {
		t.Filling = ""
		if err := in.d.store.PutTarget(context.Background(), t); err != nil {
			in.d.log.Error("post-copy: record our copy ended", "target", t.Key(), "err", err)
		}
	}
	if err := lazy.End(); err != nil {
		in.d.log.Warn("post-copy: lazy-pages daemon", "err", err)
	}
	local.Close()
	in.d.log.Error("post-copy broke before every page was here; our copy is ended and the source resumes its own", "target", t.Key(), "pid", t.PID, "err", why)
	return fmt.Errorf("post-copy broke before every page was here; this copy is ended: %w", why)
}

func waitWord(word <-chan error) error {
	select {
	case err := <-word:
		return err
	case <-time.After(doneWait):
		return fmt.Errorf("no word within %s", doneWait)
	}
}

// waitExit waits for a daemon the source says is done to exit.
func waitExit(lazy *criu.LazyPages) error {
	select {
	case <-lazy.Exited():
		return nil
	case <-time.After(doneWait):
		return fmt.Errorf("the source is done but the lazy-pages daemon is not, %s later", doneWait)
	}
}

// killTree kills every process of a running target's tree, the root
// first checked to be the target's.
func killTree(t *store.Target) error {
	if !proc.Alive(t.PID, t.StartTime) {
		return nil
	}
	var errs []error
	for _, p := range proc.Tree(t.PID) {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// endUnfilled ends, at start, what a post-copy was filling when ckptd
// died: its lazy-pages daemon is gone, and its missing pages read as
// zeros. The record stays, saying why it ended.
func (d *Daemon) endUnfilled(ctx context.Context) {
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		d.log.Error("look for unfinished post-copies", "err", err)
		return
	}
	for _, t := range ts {
		if t.Filling == "" {
			continue
		}
		alive := proc.Alive(t.PID, t.StartTime)
		if err := killTree(t); err != nil {
			d.log.Error("end an unfinished post-copy", "target", t.Key(), "err", err)
			continue
		}
		t.Filling = ""
		if alive {
			d.log.Error("ended a target whose post-copy never finished: ckptd stopped while its pages moved", "target", t.Key(), "pid", t.PID)
			t.Exit = "ended: ckptd stopped while its post-copy pages moved"
		}
		if err := d.store.PutTarget(ctx, t); err != nil {
			d.log.Error("record an unfinished post-copy ended", "target", t.Key(), "err", err)
		}
	}
}
