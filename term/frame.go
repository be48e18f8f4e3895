// Package term gives workloads a terminal that outlives ckptd: a small
// holder process (cmd/ckptd-term, the role conmon plays for Podman) keeps
// the pseudo-terminal's master side, records what the session writes in
// its log and a bounded scrollback, and serves attached clients over a
// unix socket. ckptd relays its clients to the holder, so stopping or
// killing ckptd never hangs the session up.
package term

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame kinds on a holder's socket.
const (
	FrameData   byte = 'd' // terminal bytes: input to the holder, output from it
	FrameResize byte = 'r' // to the holder: rows, cols
	FrameStatus byte = 's' // to the holder: a question; from it: rows, cols, clients
	FrameReplay byte = 'p' // to the holder, first: send the scrollback, then live output
	FrameQuery  byte = 'q' // to the holder, first: only status questions follow
	// FrameScrollback, to the holder first: send the scrollback as data
	// frames, then this kind, empty, and close.
	FrameScrollback byte = 'b'
)

// maxFrame bounds a frame's payload.
const maxFrame = 64 << 10

// WriteFrame writes one frame of kind with payload p.
func WriteFrame(w io.Writer, kind byte, p []byte) error {
	if len(p) > maxFrame {
		return fmt.Errorf("terminal frame of %d bytes (at most %d)", len(p), maxFrame)
	}
	hdr := [5]byte{kind}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(append(hdr[:], p...)); err != nil {
		return err
	}
	return nil
}

// ReadFrame reads one frame.
func ReadFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, errors.New("terminal frame too large")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// Size is a terminal's window size.
type Size struct{ Rows, Cols uint16 }

func (s Size) bytes() []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:], s.Rows)
	binary.BigEndian.PutUint16(b[2:], s.Cols)
	return b[:]
}

func sizeOf(p []byte) (Size, error) {
	if len(p) < 4 {
		return Size{}, errors.New("short window size frame")
	}
	return Size{binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])}, nil
}

// Status is what a holder says about its session.
type Status struct {
	Size    Size
	Clients int // attached clients
}

func statusOf(p []byte) (Status, error) {
	s, err := sizeOf(p)
	if err != nil || len(p) < 8 {
		return Status{}, errors.New("short status frame")
	}
	return Status{Size: s, Clients: int(binary.BigEndian.Uint32(p[4:]))}, nil
}

func (s Status) bytes() []byte {
	b := append(s.Size.bytes(), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[4:], uint32(s.Clients))
	return b
}
