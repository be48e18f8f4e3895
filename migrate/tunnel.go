package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
)

// HalfCloser is a connection that can end its sending direction alone,
// as *net.TCPConn and *tls.Conn can.
type HalfCloser interface {
	net.Conn
	CloseWrite() error
}

// Tunnel joins a local CRIU connection to a peer's stream: bytes flow both
// ways (CRIU's page-server protocol has acknowledgements), and an end of
// stream on one side is passed on to the other. Sent counts what went
// from local to remote, Received what came back; a peer sending more
// than Limit (when set) is cut off.
type Tunnel struct {
	Sent, Received atomic.Int64
	Limit          int64
	// Hold leaves the local connection to the caller: the peer's end of
	// stream is not passed on, and a failure closes only the peer's side.
	// CRIU then sees a break only when the caller decides: a post-copy
	// must end the destination's copy before its lazy-pages daemon lets
	// go of the copy's memory.
	Hold bool
}

// ErrOverLimit cuts off a peer that sent more than a tunnel's Limit.
var ErrOverLimit = errors.New("the peer sent more than it offered")

// Run copies until both directions end. When either fails, both
// connections are closed, so CRIU on either side sees the break at once.
func (t *Tunnel) Run(ctx context.Context, local, remote HalfCloser) error {
	return t.join(ctx, local, []HalfCloser{remote},
		func() error { return pipe(remote, local, &t.Sent, 0, "to peer", false) },
		func() error { return pipe(local, remote, &t.Received, t.Limit, "from peer", t.Hold) })
}

// join runs both directions until they end. When one fails, the peer's
// connections are closed, and local too unless Hold.
func (t *Tunnel) join(ctx context.Context, local HalfCloser, remotes []HalfCloser, ways ...func() error) error {
	closeAll := func() {
		for _, r := range remotes {
			r.Close()
		}
		if !t.Hold {
			local.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	errc := make(chan error, len(ways))
	for _, way := range ways {
		go func() { errc <- way() }()
	}
	var first error
	for range ways {
		if err := <-errc; err != nil && first == nil {
			first = err
			closeAll()
			if t.Hold {
				break // the other way ends when the caller closes local
			}
		}
	}
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

func pipe(dst, src HalfCloser, counter *atomic.Int64, limit int64, dir string, keepOpen bool) error {
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if total := counter.Add(int64(n)); limit > 0 && total > limit {
				return fmt.Errorf("page stream %s: %w (%d MiB): cut off", dir, ErrOverLimit, limit>>20)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return fmt.Errorf("page stream %s: %w", dir, werr)
			}
		}
		if errors.Is(err, io.EOF) {
			if keepOpen {
				return nil
			}
			if cerr := dst.CloseWrite(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				return fmt.Errorf("page stream %s: %w", dir, cerr)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("page stream %s: %w", dir, err)
		}
	}
}

// LoopbackPair returns two ends of one TCP connection over loopback: CRIU
// speaks its page-server protocol over TCP, and ckptd keeps one end while
// CRIU gets the other as a file descriptor. Its listener lives for one
// accept; a local stranger that connects first is turned away and the
// pair is made again.
func LoopbackPair() (mine *net.TCPConn, theirs *os.File, err error) {
	for range 10 {
		if mine, theirs, err = loopbackPair(); !errors.Is(err, errStranger) {
			return mine, theirs, err
		}
	}
	return nil, nil, err
}

var errStranger = errors.New("a stranger connected first")

func loopbackPair() (mine *net.TCPConn, theirs *os.File, err error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, fmt.Errorf("loopback listener: %w", err)
	}
	defer ln.Close()
	mine, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, nil, fmt.Errorf("loopback dial: %w", err)
	}
	other, err := ln.AcceptTCP()
	if err != nil {
		mine.Close()
		return nil, nil, fmt.Errorf("loopback accept: %w", err)
	}
	defer other.Close()
	// Make sure it is our own dial that was accepted, not a stranger's.
	if other.RemoteAddr().String() != mine.LocalAddr().String() {
		mine.Close()
		return nil, nil, fmt.Errorf("loopback pair: accepted %s, not our %s: %w", other.RemoteAddr(), mine.LocalAddr(), errStranger)
	}
	theirs, err = other.File()
	if err != nil {
		mine.Close()
		return nil, nil, err
	}
	return mine, theirs, nil
}
