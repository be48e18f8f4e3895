package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// DefaultRestoreTimeout bounds how long a frozen source waits for the
// destination to report the target running.
const DefaultRestoreTimeout = 5 * time.Minute

// MigrateRequest asks for a target to be moved to another ckptd.
type MigrateRequest struct {
	Target     string
	To         string // the destination ckptd's peer address, host:port
	Name       string // the target's name there; empty keeps it
	KeepSource bool   // leave the source running: the destination gets a copy
	// Lazy is post-copy: the destination runs the target at once and
	// its memory follows; if the source dies before every page has
	// moved, the workload is lost.
	Lazy bool
	// Options are CRIU's switches; LeaveRunning is KeepSource's business.
	Options        store.Options
	RestoreTimeout time.Duration // 0: DefaultRestoreTimeout
	// PeerTimeout ends the migration when the destination makes no
	// progress for that long (0: the daemon's peer_timeout).
	PeerTimeout time.Duration
	// Precopy says whether live rounds go first (PrecopyAuto: above
	// PrecopyAbove of memory), at most PrecopyRounds of them with the
	// frozen one (0: DefaultPrecopyRounds).
	Precopy       PrecopyMode
	PrecopyRounds int
	Progress      func(MigrateProgress)
}

// MigrateProgress is reported while a migration runs.
type MigrateProgress struct {
	Phase string // "preflight", "transfer", "restore"
	Bytes int64  // moved so far
	Total int64  // the estimate: the target's resident memory
}

// MigrateResult is a finished migration.
type MigrateResult struct {
	Destination   string // the peer's certificate name and address
	Name          string // the target's name there
	PID           int    // there
	Checkpoint    string // the id of the checkpoint the destination keeps
	Downtime      time.Duration
	Total         time.Duration
	Bytes         int64
	Stats         *store.DumpStats
	SourceStopped bool
	Warnings      []string
	Phases        []Phase // the downtime's parts, in order
	Rounds        []Round // pre-copy rounds, the frozen one last
}

// Migrate moves a running target to the ckptd at req.To: pre-flight there
// before anything freezes, then stop-and-copy with the pages streamed
// straight to the destination's CRIU page server. The source is stopped
// only once the destination reports the target running; any failure
// before that resumes the source as it was.
func (d *Daemon) Migrate(ctx context.Context, req MigrateRequest) (*MigrateResult, error) {
	start := time.Now()
	if err := access.From(ctx).Need("migrate"); err != nil {
		return nil, err
	}
	switch {
	case req.To == "":
		return nil, fmt.Errorf("no destination given: %w", errdefs.ErrInvalidArgument)
	case req.Lazy && (req.KeepSource || req.Precopy == PrecopyOn):
		return nil, fmt.Errorf("--lazy moves the target and excludes --keep-source and --precopy: %w", errdefs.ErrInvalidArgument)
	case d.peer == nil:
		return nil, fmt.Errorf("no peer credentials configured (peer_certs): %w", errdefs.ErrFailedPrecondition)
	}
	if _, _, err := net.SplitHostPort(req.To); err != nil {
		return nil, fmt.Errorf("destination %q: want host:port: %w", req.To, errdefs.ErrInvalidArgument)
	}
	t, unlock, err := d.lockLive(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if req.Lazy && t.Kind == store.KindContainer {
		return nil, fmt.Errorf("--lazy: containerd's checkpoints have no lazy pages; containers migrate by stop-and-copy or --precopy: %w", errdefs.ErrFailedPrecondition)
	}
	req.Options.ShellJob = req.Options.ShellJob || ledSession(t.TargetRef)
	if t.ScaleToZero != nil {
		return nil, fmt.Errorf("%s scales to zero, and its held ports do not move with it yet: %w", t.Name, errdefs.ErrFailedPrecondition)
	}
	opts, err := withNetwork(dumperOptions(req.Options), t.Network)
	if err != nil {
		return nil, err
	}
	m := &outgoing{d: d, req: req, target: t, id: store.NewID(), start: start, opts: opts}
	res, err := m.run(ctx)
	if err != nil {
		d.events.Publish(events.Event{Kind: events.Failed, Op: "migrate", Target: t.Key(), Err: err.Error()})
		return nil, fmt.Errorf("migrate %s to %s: %w", req.Target, req.To, err)
	}
	d.events.Publish(events.Event{Kind: events.Migrated, Target: t.Key(), Name: res.Destination,
		Duration: res.Downtime, Bytes: res.Bytes})
	d.log.Info("migrated", "target", t.Key(), "to", res.Destination, "name", res.Name,
		"downtime", res.Downtime, "bytes", res.Bytes, "source_stopped", res.SourceStopped)
	return res, nil
}

// outgoing is one migration on its source.
type outgoing struct {
	d      *Daemon
	req    MigrateRequest
	target *store.Target
	id     string
	start  time.Time
	conn   *migrate.Conn
	offer  *migrate.Offer
	opts   dumper.Options // the dumps' (its own network external)

	filesSent atomic.Int64
	// commitSent: from here the destination may have the commit and run
	// a copy, even if its answer never comes.
	commitSent atomic.Bool
	restoring  atomic.Bool
	pages      atomic.Pointer[migrate.Tunnel] // set by the dump, read by progress
	frozen     time.Time
	marks      []Phase // phases so far, each ending at mark()
	last       time.Time
	restored   *migrate.Restored
	downtime   time.Duration
	// releaseHold ends the shutdown hold the commit took.
	releaseHold func()
	// uncut stops the request's context from cutting the connection; the
	// commit calls it, since from there the fencing rules decide.
	uncut  func() bool
	rounds []Round // pre-copy rounds sent
}

// PrecopyMode chooses between pre-copy and stop-and-copy.
type PrecopyMode int

const (
	PrecopyAuto PrecopyMode = iota // pre-copy above PrecopyAbove
	PrecopyOn
	PrecopyOff
)

func (m *outgoing) run(ctx context.Context) (res *MigrateResult, err error) {
	d := m.d
	w, err := d.store.NewDumpWork(m.id)
	if err != nil {
		return nil, err
	}
	work, images := w.Path, d.store.Layout().DumpImages(m.id)
	defer func() {
		if m.releaseHold != nil {
			m.releaseHold()
		}
		// The sent images go in any case; CRIU's logs stay when it failed.
		for _, dir := range []string{images, filepath.Join(work, "rounds")} {
			if rerr := os.RemoveAll(dir); rerr != nil {
				d.log.Warn("migration: clean up", "dir", dir, "err", rerr)
			}
		}
		d.closeWork(w, &err)
	}()
	if err := os.Mkdir(images, 0o700); err != nil {
		return nil, err
	}
	m.progress("preflight")
	if m.offer, err = d.offer(ctx, m.target, m.req, work); err != nil {
		return nil, err
	}
	if m.conn, err = migrate.Dial(ctx, m.req.To, d.peer, cmp.Or(m.req.PeerTimeout, d.peerIdle)); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	defer m.conn.Close()
	// A client that gives up (ckptctl interrupted) ends the migration
	// until the commit: the source resumes, the destination discards.
	m.uncut = context.AfterFunc(ctx, func() { m.conn.Close() })
	defer m.uncut()
	if err := m.conn.Send(&migrate.Message{Kind: migrate.KindOffer, Offer: m.offer}); err != nil {
		return nil, err
	}
	msg, err := m.conn.Recv(migrate.KindReport)
	if err != nil {
		return nil, m.cause(ctx, err)
	}
	if p := msg.Report.Problems; len(p) > 0 {
		return nil, fmt.Errorf("pre-flight on %s failed, nothing was frozen: %s: %w",
			m.conn.Peer(), strings.Join(p, "; "), errdefs.ErrFailedPrecondition)
	}
	// The destination hears from us while CRIU dumps.
	defer m.conn.Beat()()

	stop := m.reportProgress()
	c := m.record()
	var stats *store.DumpStats
	switch {
	case m.target.Kind == store.KindContainer:
		stats, err = m.dumpContainer(ctx, c, images, work)
	case m.offer.Rounds > 0:
		stats, err = m.precopy(ctx, c, work, m.processRounds(c, work))
	case m.offer.Lazy:
		stats, err = m.dumpLazy(ctx, c, msg.Report, images, work)
	default:
		stats, err = m.dumpProcess(ctx, c, msg.Report, images, work)
	}
	stop()
	if err != nil {
		return nil, m.fail(ctx, m.cause(ctx, err))
	}
	// Checked, not assumed: a fenced destination resumes only on this word.
	stopped := !m.req.KeepSource && !proc.Alive(m.target.PID, m.target.StartTime)
	warnings := m.restored.Warnings
	if err := m.conn.Send(&migrate.Message{Kind: migrate.KindDone, Done: &migrate.Done{SourceStopped: stopped, Stats: stats}}); err != nil {
		d.log.Warn("migration: telling the destination we are done", "err", err)
		if m.offer.Fenced {
			warnings = append(warnings, fmt.Sprintf("%s did not hear that the source's copy is gone (%v): its copy stays stopped, in doubt, until 'ckptctl migrate --resolve %s --resume' there",
				m.conn.Peer(), err, m.restored.Name))
		}
	}
	if m.offer.Fenced {
		m.downtime = time.Since(m.frozen) // the destination resumes on this word
		m.mark("release")
	}
	d.log.Debug("migration phases", append([]any{"target", m.target.Key(), "downtime", m.downtime}, phaseAttrs(m.marks)...)...)
	return &MigrateResult{
		Destination: m.conn.Peer(), Name: m.restored.Name, PID: m.restored.PID, Checkpoint: m.restored.Checkpoint,
		Downtime: m.downtime, Total: time.Since(m.start), Bytes: m.bytes(), Stats: stats,
		SourceStopped: stopped, Warnings: warnings, Phases: m.marks, Rounds: m.rounds,
	}, nil
}

// record is the checkpoint as the destination will keep it.
func (m *outgoing) record() *store.Checkpoint {
	h := m.d.host
	c := &store.Checkpoint{
		ID: m.id, Name: m.offer.Name, Target: m.target.TargetRef,
		CRIUVersion: m.d.criu.VersionString(), Kernel: h.Kernel, Host: h.Hostname, CPUModel: h.CPUModel,
		Options: m.req.Options, Network: networkSpec(m.target.Network),
	}
	c.Target.Terminal = m.d.terminalAtCheckpoint(c.Target)
	return c
}

func (m *outgoing) dumpProcess(ctx context.Context, c *store.Checkpoint, report *migrate.Report, images, work string) (*store.DumpStats, error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps, err := m.openPages(ctx, tctx, report, &migrate.Tunnel{})
	if err != nil {
		return nil, err
	}
	defer ps.close()
	theirs, tunnelDone := ps.theirs, ps.done

	opts := withTerminal(m.opts, c.Target)
	opts.LeaveRunning = m.req.KeepSource
	done, err := m.d.holdForDump(m.target, opts.TCPEstablished)
	if err != nil {
		return nil, err
	}
	m.freeze()
	res, err := m.d.dumper.Dump(ctx, dumper.Request{
		PID: m.target.PID, Dir: images, WorkDir: work, Options: opts,
		PageServer: theirs,
		Commit: func() error {
			// CRIU has flushed and left its page server: the stream is whole
			// once the destination has taken it all.
			select {
			case err := <-tunnelDone:
				if err != nil {
					return err
				}
			case <-time.After(m.conn.Idle()):
				return fmt.Errorf("the destination did not finish the page stream within %s of its end: %w", m.conn.Idle(), migrate.ErrSilent)
			}
			return m.commit(c, images)
		},
	})
	done(err == nil && !m.req.KeepSource)

	if err != nil {
		cancel()
		select {
		case terr := <-tunnelDone:
			if terr != nil && m.restored == nil {
				// The broken stream is the cause; CRIU only noticed it.
				err = fmt.Errorf("%w (%w)", terr, err)
			}
		default:
		}
		return nil, err
	}
	return convertStats(res.Stats), nil
}

// dumpContainer dumps a container through containerd, by pre-copy
// rounds when the offer has them.
func (m *outgoing) dumpContainer(ctx context.Context, c *store.Checkpoint, images, work string) (*store.DumpStats, error) {
	r, err := m.containerRounds(c, work)
	if err != nil {
		return nil, err
	}
	if m.offer.Rounds > 0 {
		return m.precopy(ctx, c, work, r)
	}
	m.freeze()
	return r.frozen(ctx, images, func() error { return m.commit(c, images) })
}

// containerRounds checkpoints a container through containerd. A live
// round keeps the spec and writable layer it saves in the work directory:
// only the frozen round's cross.
func (m *outgoing) containerRounds(c *store.Checkpoint, work string) (rounds, error) {
	r, err := container.RefFromName(m.target.Name)
	if err != nil {
		return rounds{}, err
	}
	o := c.Options
	checkpoint := func(ctx context.Context, dir, keep string, leave bool, commit func(container.Source) error) (container.CheckpointResult, error) {
		return m.d.containers.Checkpoint(ctx, container.CheckpointRequest{
			Ref: r, ImagesDir: dir, WorkDir: work,
			SpecPath:     filepath.Join(keep, store.ContainerSpecFile),
			RootfsPath:   filepath.Join(keep, store.RootfsDiffFile),
			PausedMarker: filepath.Join(work, store.PausedFile),
			Options: container.Options{LeaveRunning: leave, TCPEstablished: o.TCPEstablished,
				FileLocks: o.FileLocks, ExtUnixSk: o.ExtUnixSk, ShellJob: o.ShellJob},
			Commit: commit,
		})
	}
	return rounds{
		live: func(ctx context.Context, dir string) error {
			for _, f := range []string{store.ContainerSpecFile, store.RootfsDiffFile} {
				if err := os.Remove(filepath.Join(work, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			_, err := checkpoint(ctx, dir, work, true, func(container.Source) error { return nil })
			return err
		},
		frozen: func(ctx context.Context, dir string, commit func() error) (*store.DumpStats, error) {
			res, err := checkpoint(ctx, dir, dir, m.req.KeepSource, func(src container.Source) error {
				c.Container = containerRecord(r, src)
				return commit()
			})
			if err != nil {
				return nil, err
			}
			return convertStats(res.Stats), nil
		},
	}, nil
}
