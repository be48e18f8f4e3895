package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/ckptd/ckptd/chain"
	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/store"
)

// receiveFiles stores the files the source sends until its commit, which
// must describe the target the offer named, and returns where the images
// to restore are: dir, or a pre-copy's last round, whose unchanged pages
// are read from the rounds before (sibling directories under the work
// directory).
func (in *incoming) receiveFiles(dir string) (*store.Checkpoint, string, error) {
	var files int64
	cur, round := dir, 0
	for n := 0; ; n++ {
		msg, err := in.conn.Next()
		if err != nil {
			return nil, "", err
		}
		switch msg.Kind {
		case migrate.KindFile:
			if n >= migrate.MaxFiles {
				return nil, "", fmt.Errorf("protocol: more than %d files", migrate.MaxFiles)
			}
			if files += msg.File.Size; files+in.pages.Load() > in.budget {
				return nil, "", fmt.Errorf("the source sent more than its offer (%d MiB with room to grow): cut off", in.budget>>20)
			}
			if err := in.conn.RecvFile(cur, msg.File); err != nil {
				return nil, "", err
			}
		case migrate.KindRound:
			if msg.Round.N != round+1 || round >= in.offer.Rounds {
				return nil, "", fmt.Errorf("protocol: round %d after round %d of at most %d", msg.Round.N, round, in.offer.Rounds)
			}
			round = msg.Round.N
			next := filepath.Join(in.work, "rounds", roundName(round))
			if err := os.MkdirAll(next, 0o700); err != nil {
				return nil, "", err
			}
			if round > 1 {
				if err := chain.Link(next, cur); err != nil {
					return nil, "", err
				}
			}
			cur = next
		case migrate.KindCommit:
			c := msg.Commit.Checkpoint
			if c.Target.Key() != in.offer.Target.Key() || c.Target.Kind != in.offer.Target.Kind {
				return nil, "", fmt.Errorf("protocol: commit of %s after an offer of %s", c.Target.Key(), in.offer.Target.Key())
			}
			if err := chain.Check(cur); err != nil {
				return nil, "", fmt.Errorf("protocol: the rounds do not hold every page: %w", err)
			}
			return c, cur, nil
		default:
			return nil, "", fmt.Errorf("protocol: unexpected %q", msg.Kind)
		}
	}
}

// receivePages runs a CRIU page server for the source's page stream.
func (in *incoming) receivePages(ctx context.Context, wait func(context.Context) (net.Conn, error), streams int, dir string) error {
	remotes, err := awaitPageStream(ctx, wait, streams)
	if err != nil {
		return err
	}
	defer closeAll(remotes)
	mine, theirs, err := migrate.LoopbackPair()
	if err != nil {
		return err
	}
	defer mine.Close()
	ps, err := in.d.criu.PageServer(dir, in.work, theirs)
	theirs.Close()
	if err != nil {
		return err
	}
	tunnel := &migrate.Tunnel{Limit: in.budget}
	terr := tunnel.Join(ctx, mine, remotes, false)
	in.pages.Store(tunnel.Received.Load())
	if werr := ps.Wait(ctx, in.d.criu.Deadline(in.offer.MemoryBytes)); werr != nil {
		return criu.PageServerError(in.work, werr)
	}
	return terr
}

// awaitPageStream waits, bounded, for the source to open the page
// stream's connections it was given a token for.
func awaitPageStream(ctx context.Context, wait func(context.Context) (net.Conn, error), streams int) ([]net.Conn, error) {
	wctx, cancel := context.WithTimeout(ctx, pageStreamWait)
	defer cancel()
	var conns []net.Conn
	for range streams {
		c, err := wait(wctx)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("page stream did not arrive: %w", err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// pageStreams is how many connections a page stream takes: peer_streams,
// or as many as cores up to maxPageStreams, and no more than the peer
// offers (0: one).
func (d *Daemon) pageStreams(offered int) int {
	limit := d.peerStreams
	if limit == 0 {
		limit = min(runtime.NumCPU(), maxPageStreams)
	}
	return max(1, min(offered, limit))
}

// maxPageStreams caps the default connections of one page stream: each
// costs a core's encryption, and CRIU needs cores too.
const maxPageStreams = 4

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
