package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/ckptd/ckptd/errdefs"
)

// maxTrailer bounds what may follow an archive's end in a stream whose
// digest is checked (tar padding, a compressor's trailer).
const maxTrailer = 1 << 20

// Drain reads what follows an archive's end in r, to r's end: only then
// has the sender said all it had to say (and not, say, that its source
// failed). More than a bounded trailer is refused.
func Drain(r io.Reader) error {
	rest, err := io.Copy(io.Discard, io.LimitReader(r, maxTrailer+1))
	if err != nil {
		return fmt.Errorf("reading the end of the archive: %w", err)
	}
	if rest > maxTrailer {
		return fmt.Errorf("more than %d bytes follow the archive's end: %w", maxTrailer, errdefs.ErrInvalidArgument)
	}
	return nil
}

// DigestReader counts and hashes what is read through it, so that a
// stream named by a registry's digest is checked whole, not only the
// part a tar reader needed.
type DigestReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want string
	size int64
}

// NewDigestReader checks r against want ("sha256:<hex>") and size (when
// positive) at Finish.
func NewDigestReader(r io.Reader, want string, size int64) (*DigestReader, error) {
	if hex, ok := strings.CutPrefix(want, "sha256:"); !ok || len(hex) != 64 {
		return nil, fmt.Errorf("digest %q: want sha256:<64 hex digits>: %w", want, errdefs.ErrInvalidArgument)
	}
	return &DigestReader{r: r, h: sha256.New(), want: want, size: size}, nil
}

func (d *DigestReader) Read(p []byte) (int, error) {
	k, err := d.r.Read(p)
	d.h.Write(p[:k])
	d.n += int64(k)
	return k, err
}

// Finish reads what is left of the stream (a bounded trailer) and
// compares the whole with the digest and size it was opened with.
func (d *DigestReader) Finish() error {
	if err := Drain(d); err != nil {
		return err
	}
	if d.size > 0 && d.n != d.size {
		return fmt.Errorf("archive stream of %d bytes, want %d: %w", d.n, d.size, errdefs.ErrInvalidArgument)
	}
	if got := "sha256:" + hex.EncodeToString(d.h.Sum(nil)); got != d.want {
		return fmt.Errorf("archive stream has digest %s, want %s: %w", got, d.want, errdefs.ErrInvalidArgument)
	}
	return nil
}
