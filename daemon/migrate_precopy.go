package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ckptd/ckptd/chain"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/store"
)

// Pre-copy without soft-dirty tracking (which CRIU's pre-dump needs and
// this project's kernels lack): each live round is a --leave-running dump
// on the source's disk, deduplicated against the round before with
// ckptd's own page comparison (package chain), so that only the pages
// that changed cross the link. The frozen round sends only the last
// difference; the destination restores from the chain of rounds.

// DefaultPrecopyRounds is the most rounds a pre-copy makes, the frozen
// one included (migrate --precopy-rounds).
const DefaultPrecopyRounds = 4

// PrecopyAbove is the resident size above which a process tree is
// pre-copied unless the request says otherwise. The frozen round is a
// whole local dump and a comparison (about 1.1 s a GiB here): over a fast
// link (an unshaped veth, 512 MiB) stop-and-copy's whole transfer took
// less; over 1 Gbit/s pre-copy's downtime was 0.16-0.23x.
const PrecopyAbove = 1 << 30

// Round is one pre-copy round as the result reports it.
type Round struct {
	N      int
	Bytes  int64 // sent: the images, with only the pages that changed
	Took   time.Duration
	Frozen bool // the last round, dumped with the target frozen
}

// precopyRounds is how many rounds req asks for a target of mem bytes:
// 0 for stop-and-copy.
func precopyRounds(req MigrateRequest, mem int64) int {
	switch {
	case req.Precopy == PrecopyOff:
		return 0
	case req.Precopy == PrecopyAuto && mem <= PrecopyAbove:
		return 0
	case req.PrecopyRounds > 0:
		return min(req.PrecopyRounds, migrate.MaxRounds)
	}
	return DefaultPrecopyRounds
}

// rounds dumps a target for pre-copy: live dumps the running target
// into dir; frozen dumps it into dir for the last time and calls commit
// while it is still frozen.
type rounds struct {
	live   func(ctx context.Context, dir string) error
	frozen func(ctx context.Context, dir string, commit func() error) (*store.DumpStats, error)
}

// precopy sends live rounds while the target runs, until the difference
// stops shrinking or one round is left, then dumps the frozen round,
// sends its difference and commits.
func (m *outgoing) precopy(ctx context.Context, c *store.Checkpoint, work string, r rounds) (*store.DumpStats, error) {
	dirs := filepath.Join(work, "rounds")
	prev, last := "", int64(-1)
	n := 1
	for ; n < m.offer.Rounds; n++ {
		m.progress(fmt.Sprintf("round %d", n))
		start := time.Now()
		dir, err := m.roundDir(dirs, n)
		if err != nil {
			return nil, err
		}
		if err := r.live(ctx, dir); err != nil {
			return nil, fmt.Errorf("pre-copy round %d: %w", n, err)
		}
		sent, err := m.sendRound(ctx, n, dir, prev)
		if err != nil {
			return nil, err
		}
		m.rounds = append(m.rounds, Round{N: n, Bytes: sent, Took: time.Since(start)})
		prev = dir
		if last >= 0 && sent >= last {
			n++
			break // the difference stopped shrinking
		}
		last = sent
	}
	dir, err := m.roundDir(dirs, n)
	if err != nil {
		return nil, err
	}
	m.progress("transfer")
	m.freeze()
	return r.frozen(ctx, dir, func() error {
		start := m.frozen
		if err := m.dedup(ctx, dir, prev); err != nil {
			return err
		}
		if err := m.conn.Send(&migrate.Message{Kind: migrate.KindRound, Round: &migrate.Round{N: n}}); err != nil {
			return err
		}
		before := m.filesSent.Load()
		err := m.commit(c, dir)
		m.rounds = append(m.rounds, Round{N: n, Bytes: m.filesSent.Load() - before, Took: time.Since(start), Frozen: true})
		return err
	})
}

// processRounds dumps a process tree with CRIU.
func (m *outgoing) processRounds(c *store.Checkpoint, work string) rounds {
	opts := withTerminal(m.opts, c.Target)
	return rounds{
		live: func(ctx context.Context, dir string) error {
			live := opts
			live.LeaveRunning = true
			_, err := m.d.dumper.Dump(ctx, dumper.Request{PID: m.target.PID, Dir: dir, WorkDir: work, Options: live})
			return err
		},
		frozen: func(ctx context.Context, dir string, commit func() error) (*store.DumpStats, error) {
			final := opts
			final.LeaveRunning = m.req.KeepSource
			res, err := m.d.dumper.Dump(ctx, dumper.Request{PID: m.target.PID, Dir: dir, WorkDir: work, Options: final, Commit: commit})
			if err != nil {
				return nil, err
			}
			return convertStats(res.Stats), nil
		},
	}
}

func (m *outgoing) roundDir(rounds string, n int) (string, error) {
	dir := filepath.Join(rounds, roundName(n))
	return dir, os.MkdirAll(dir, 0o700)
}

// roundName is round n's directory name: 16 hex digits, the only parent
// link package chain follows being to a sibling named like a checkpoint.
func roundName(n int) string { return fmt.Sprintf("%016x", n) }

// sendRound sends round n's images, only what changed since prev (the
// round before, "" for the first), and returns how many bytes it sent.
func (m *outgoing) sendRound(ctx context.Context, n int, dir, prev string) (int64, error) {
	if err := m.dedup(ctx, dir, prev); err != nil {
		return 0, err
	}
	if err := m.conn.Send(&migrate.Message{Kind: migrate.KindRound, Round: &migrate.Round{N: n}}); err != nil {
		return 0, err
	}
	before := m.filesSent.Load()
	if err := m.sendFiles(dir); err != nil {
		return 0, fmt.Errorf("pre-copy round %d: %w", n, err)
	}
	return m.filesSent.Load() - before, nil
}

func (m *outgoing) dedup(ctx context.Context, dir, prev string) error {
	if prev == "" {
		return nil
	}
	if _, err := chain.Dedup(ctx, dir, prev); err != nil {
		return fmt.Errorf("pre-copy: compare with the round before: %w", err)
	}
	return nil
}

// sendFiles sends the regular files of dir (not its parent link).
func (m *outgoing) sendFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := m.conn.SendFile(dir, e.Name(), func(n int64) { m.filesSent.Add(n) }); err != nil {
			return err
		}
	}
	return nil
}
