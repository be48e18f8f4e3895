package migrate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// MaxStreams bounds the connections one page stream is striped over.
const MaxStreams = 8

// stripeChunk is the most bytes one frame carries.
const stripeChunk = 256 << 10

// RunStriped is Run over several connections to the peer, so that their
// encryption runs on several cores. The pages' direction (from local when
// sender, else to it) is cut into chunks dealt round-robin over remotes,
// each framed with its length, a zero length ending the stream; the other
// direction, CRIU's small answers and requests, goes unframed over the
// first connection. Both sides must agree on len(remotes).
func (t *Tunnel) RunStriped(ctx context.Context, local HalfCloser, remotes []HalfCloser, sender bool) error {
	if sender {
		return t.join(ctx, local, remotes,
			func() error { return t.deal(local, remotes) },
			func() error { return pipe(local, remotes[0], &t.Received, t.Limit, "from peer", t.Hold) })
	}
	return t.join(ctx, local, remotes,
		func() error { return t.gather(remotes, local) },
		func() error { return pipe(remotes[0], local, &t.Sent, 0, "to peer", false) })
}

var chunks = sync.Pool{New: func() any { b := make([]byte, stripeChunk); return &b }}

// deal reads src and writes its chunks round-robin to dsts, one writer
// each, then a zero-length frame where the next chunk would go.
func (t *Tunnel) deal(src HalfCloser, dsts []HalfCloser) error {
	n := len(dsts)
	queues := make([]chan *[]byte, n)
	written := make(chan error, n)
	for i, dst := range dsts {
		queues[i] = make(chan *[]byte, 2)
		go func() { written <- writeFrames(dst, queues[i]) }()
	}
	failed := make(chan struct{})
	var werr error
	var once sync.Once
	go func() {
		for range n {
			if err := <-written; err != nil {
				once.Do(func() { werr = err; close(failed) })
			}
		}
		once.Do(func() { close(failed) })
	}()
	send := func(k int, b *[]byte) bool {
		select {
		case queues[k%n] <- b:
			return true
		case <-failed:
			return false
		}
	}
	var rerr error
	k := 0
	for {
		b := chunks.Get().(*[]byte)
		got, err := src.Read((*b)[:stripeChunk])
		if got > 0 {
			t.Sent.Add(int64(got))
			*b = (*b)[:got]
			if !send(k, b) {
				break
			}
			k++
		} else {
			chunks.Put(b)
		}
		if errors.Is(err, io.EOF) {
			end := []byte{}
			send(k, &end)
			break
		}
		if err != nil {
			rerr = fmt.Errorf("page stream to peer: %w", err)
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	<-failed
	if rerr != nil {
		return rerr
	}
	return werr
}

// writeFrames writes each chunk of q to dst with its length; an empty
// one ends dst's direction.
func writeFrames(dst HalfCloser, q <-chan *[]byte) error {
	var hdr [4]byte
	for b := range q {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(*b)))
		_, err := (&net.Buffers{hdr[:], *b}).WriteTo(dst)
		if len(*b) > 0 {
			chunks.Put(b)
		}
		if err != nil {
			return fmt.Errorf("page stream to peer: %w", err)
		}
	}
	return dst.CloseWrite()
}

// frame is one chunk read from a connection, or why none came.
type frame struct {
	b   *[]byte
	err error
}

// gather reads frames from srcs, one reader each, and writes them to dst
// in the order they were dealt, until the zero-length frame.
func (t *Tunnel) gather(srcs []HalfCloser, dst HalfCloser) error {
	n := len(srcs)
	queues := make([]chan frame, n)
	done := make(chan struct{})
	defer close(done)
	for i, src := range srcs {
		queues[i] = make(chan frame, 2)
		go readFrames(src, queues[i], done)
	}
	for k := 0; ; k++ {
		f := <-queues[k%n]
		if f.err != nil {
			return f.err
		}
		if len(*f.b) == 0 {
			if t.Hold {
				return nil
			}
			if err := dst.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("page stream from peer: %w", err)
			}
			return nil
		}
		if total := t.Received.Add(int64(len(*f.b))); t.Limit > 0 && total > t.Limit {
			return fmt.Errorf("page stream from peer: %w (%d MiB): cut off", ErrOverLimit, t.Limit>>20)
		}
		_, err := dst.Write(*f.b)
		chunks.Put(f.b)
		if err != nil {
			return fmt.Errorf("page stream from peer: %w", err)
		}
	}
}

// readFrames reads src's frames into q until the end frame or an error.
func readFrames(src io.Reader, q chan<- frame, done <-chan struct{}) {
	deliver := func(f frame) bool {
		select {
		case q <- f:
			return true
		case <-done:
			return false
		}
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			deliver(frame{err: fmt.Errorf("page stream from peer: %w", err)})
			return
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > stripeChunk {
			deliver(frame{err: fmt.Errorf("page stream from peer: a frame of %d bytes", size)})
			return
		}
		b := chunks.Get().(*[]byte)
		*b = (*b)[:size]
		if _, err := io.ReadFull(src, *b); err != nil {
			deliver(frame{err: fmt.Errorf("page stream from peer: %w", err)})
			return
		}
		if !deliver(frame{b: b}) || size == 0 {
			return
		}
	}
}

// Join runs the tunnel over the page stream's connections: unframed over
// one, striped over more. The sender is the side whose CRIU writes the
// pages.
func (t *Tunnel) Join(ctx context.Context, local HalfCloser, remotes []net.Conn, sender bool) error {
	hcs := make([]HalfCloser, len(remotes))
	for i, r := range remotes {
		hc, ok := r.(HalfCloser)
		if !ok {
			return fmt.Errorf("page stream: %T cannot half-close", r)
		}
		hcs[i] = hc
	}
	if len(hcs) == 1 {
		return t.Run(ctx, local, hcs[0])
	}
	return t.RunStriped(ctx, local, hcs, sender)
}
