package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/logfile"
	"github.com/ckptd/ckptd/store"
)

// LogsRequest selects what of a log Logs streams.
type LogsRequest struct {
	Name      string // a workload, or ctr:NAMESPACE/ID of a container ckptd restored
	TailBytes int64  // only the last N bytes (0: all)
	TailLines int64  // only the last N lines (0: all)
	// Tail makes zero counts exact: no bytes, no lines (logs -n 0 -f
	// prints only what comes).
	Tail   bool
	Follow bool // go on until the target ends or ctx is done
}

const (
	logChunk      = 64 << 10
	logFollowPoll = 200 * time.Millisecond
)

// Logs streams the output of a workload, or of a container ckptd
// restored, to send in chunks of at most logChunk bytes.
func (d *Daemon) Logs(ctx context.Context, req LogsRequest, send func([]byte) error) error {
	if req.TailBytes < 0 || req.TailLines < 0 {
		return fmt.Errorf("a tail of %d lines, %d bytes: want 0 or more: %w", req.TailLines, req.TailBytes, errdefs.ErrInvalidArgument)
	}
	var t *store.Target
	var err error
	if container.IsRef(req.Name) {
		t, err = d.restoredContainer(ctx, req.Name)
	} else {
		t, err = d.workload(ctx, req.Name)
	}
	if err != nil {
		return err
	}
	f, err := os.Open(t.LogPath)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", req.Name, err)
	}
	defer f.Close()
	off, err := tailOffset(f, req.TailBytes, req.TailLines)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", req.Name, err)
	}
	if req.Tail && req.TailBytes == 0 && req.TailLines == 0 {
		if off, err = f.Seek(0, io.SeekEnd); err != nil {
			return fmt.Errorf("logs of %s: %w", req.Name, err)
		}
	}
	buf := make([]byte, logChunk)
	for {
		if off, err = sendRest(f, off, buf, send); err != nil {
			return fmt.Errorf("logs of %s: %w", req.Name, err)
		}
		// At the end: done, unless following a target that still runs (its
		// last words are read once more after it ended).
		if !req.Follow {
			return nil
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			// Rotated: what came after off went to LOG.1 first.
			if err := sendFrom(logfile.Old(t.LogPath, 1), off, buf, send); err != nil {
				return fmt.Errorf("logs of %s: %w", req.Name, err)
			}
			off = 0
			continue
		}
		if !d.alive(t) {
			req.Follow = false
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(logFollowPoll):
		}
	}
}

// tailOffset is where the last tailBytes bytes, or the last tailLines
// lines, of f begin; with both, the later of the two.
func tailOffset(f io.ReaderAt, tailBytes, tailLines int64) (int64, error) {
	st, err := f.(*os.File).Stat()
	if err != nil {
		return 0, err
	}
	return tailOffsetIn(f, st.Size(), tailBytes, tailLines)
}

func tailOffsetIn(r io.ReaderAt, size, tailBytes, tailLines int64) (int64, error) {
	off := int64(0)
	if tailBytes > 0 && size > tailBytes {
		off = size - tailBytes
	}
	if tailLines <= 0 {
		return off, nil
	}
	// Walk back from the end; a final newline ends the last line, it does
	// not start another.
	end := size
	if end > 0 {
		var last [1]byte
		if _, err := r.ReadAt(last[:], end-1); err != nil {
			return 0, err
		}
		if last[0] == '\n' {
			end--
		}
	}
	buf := make([]byte, logChunk)
	lines := int64(0)
	for pos := end; pos > off; {
		n := min(int64(len(buf)), pos-off)
		pos -= n
		if _, err := r.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			if lines++; lines == tailLines {
				return pos + i + 1, nil
			}
		}
	}
	return off, nil
}

// sendFrom sends what path holds past off (nothing if it is gone: a log
// rotated with max files 1 keeps no old one).
func sendFrom(path string, off int64, buf []byte, send func([]byte) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = sendRest(f, off, buf, send)
	return err
}

// sendRest sends what r holds from off to its end, in chunks of buf's
// size, and returns where it ended.
func sendRest(r io.ReaderAt, off int64, buf []byte, send func([]byte) error) (int64, error) {
	for {
		n, err := r.ReadAt(buf, off)
		if n > 0 {
			if err := send(buf[:n]); err != nil {
				return off, err
			}
			off += int64(n)
			continue
		}
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		return off, err
	}
}
