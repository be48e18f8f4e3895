package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// Digests. Format 1 records SHA-256. Format 2 records BLAKE3 (measured
// here: about twice SHA-256's speed with SHA-NI), computed over pieces so
// that one big page image is hashed on every core: a file of at most one
// piece has its plain BLAKE3-256 (what b3sum prints); a longer one has the
// BLAKE3-256 of its pieces' BLAKE3-256 digests, concatenated in order.
var pieceSize int64 = 64 << 20 // a variable for tests

// pieceHash is format 2's digest fed sequentially (the prehasher follows
// files as CRIU writes them); it equals what hashPieces computes.
type pieceHash struct {
	cur    *blake3.Hasher
	n      int64  // bytes in cur
	pieces []byte // digests of the finished pieces
}

func newPieceHash() *pieceHash { return &pieceHash{cur: blake3.New()} }

func (h *pieceHash) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if h.n == pieceSize {
			h.pieces = h.cur.Sum(h.pieces)
			h.cur.Reset()
			h.n = 0
		}
		k := int(min(int64(len(p)), pieceSize-h.n))
		h.cur.Write(p[:k])
		h.n += int64(k)
		p = p[k:]
	}
	return total, nil
}

func (h *pieceHash) Sum() string {
	if len(h.pieces) == 0 {
		return hex.EncodeToString(h.cur.Sum(nil))
	}
	return rootOf(h.cur.Sum(append([]byte(nil), h.pieces...)))
}

func rootOf(pieces []byte) string {
	if len(pieces) == blake3Size {
		return hex.EncodeToString(pieces)
	}
	sum := blake3.Sum256(pieces)
	return hex.EncodeToString(sum[:])
}

const blake3Size = 32

// fileHasher is the sequential digest of a checkpoint format.
type fileHasher interface {
	io.Writer
	Sum() string
}

type sha256Hash struct{ hash.Hash }

func (h sha256Hash) Sum() string { return hex.EncodeToString(h.Hash.Sum(nil)) }

func newFileHasher(format int) fileHasher {
	if format == 1 {
		return sha256Hash{sha256.New()}
	}
	return newPieceHash()
}

// sumOf is a FileSum in the field of the format's digest.
func sumOf(format int, size int64, digest string) FileSum {
	if format == 1 {
		return FileSum{Size: size, SHA256: digest}
	}
	return FileSum{Size: size, BLAKE3: digest}
}

// hashOptions say how sumFiles reads.
type hashOptions struct {
	format  int    // checkpoint format: which digest
	seal    bool   // fsync each file and make it root's alone (CRIU writes 0644)
	workers int    // 0: one per core
	pace    *pacer // nil: full speed
}

type hashedFile struct {
	name   string
	f      *os.File
	size   int64
	pieces [][]byte // format 2: one digest per piece
	h      fileHasher
	err    error
}

// sumFiles hashes the named files of dir. In format 2 the pieces of all
// files are spread over the workers; format 1 hashes a file per worker.
func sumFiles(ctx context.Context, dir string, names []string, o hashOptions) (map[string]FileSum, error) {
	files := make([]*hashedFile, 0, len(names))
	defer func() {
		for _, hf := range files {
			hf.f.Close()
		}
	}()
	type job struct {
		hf    *hashedFile
		piece int
	}
	var jobs []job
	for _, name := range names {
		hf, err := openHashed(filepath.Join(dir, name), o)
		if err != nil {
			return nil, err
		}
		hf.name = name
		files = append(files, hf)
		if o.format == 1 {
			hf.h = newFileHasher(1)
			jobs = append(jobs, job{hf, -1})
			continue
		}
		n := max(1, int((hf.size+pieceSize-1)/pieceSize))
		hf.pieces = make([][]byte, n)
		for i := range n {
			jobs = append(jobs, job{hf, i})
		}
	}
	workers := o.workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	work := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards hashedFile.err
	for range min(workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for j := range work {
				err := ctx.Err()
				if err == nil {
					err = j.hf.hash(j.piece, buf, o.pace)
				}
				if err != nil {
					mu.Lock()
					j.hf.err = err
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sums := make(map[string]FileSum, len(files))
	for _, hf := range files {
		sum, err := hf.finish(o)
		if err != nil {
			return nil, err
		}
		sums[hf.name] = sum
	}
	return sums, nil
}

func openHashed(path string, o hashOptions) (*hashedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && o.seal {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &hashedFile{f: f, size: st.Size()}, nil
}

// hash reads one piece (format 2) or the whole file (piece -1, format 1).
func (hf *hashedFile) hash(piece int, buf []byte, pace *pacer) error {
	off, n := int64(0), hf.size
	var h io.Writer = hf.h
	var ph *blake3.Hasher
	if piece >= 0 {
		off, n = int64(piece)*pieceSize, min(pieceSize, hf.size-int64(piece)*pieceSize)
		ph = blake3.New()
		h = ph
	}
	got, err := io.CopyBuffer(h, pace.reader(io.NewSectionReader(hf.f, off, n)), buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", hf.f.Name(), err)
	}
	if got != n {
		return fmt.Errorf("read %s: %d of %d bytes at %d: the file shrank", hf.f.Name(), got, n, off)
	}
	if ph != nil {
		hf.pieces[piece] = ph.Sum(nil)
	}
	return nil
}

func (hf *hashedFile) finish(o hashOptions) (FileSum, error) {
	if hf.err != nil {
		return FileSum{}, hf.err
	}
	if o.seal {
		if err := hf.f.Sync(); err != nil {
			return FileSum{}, fmt.Errorf("fsync %s: %w", hf.f.Name(), err)
		}
	}
	if o.format == 1 {
		return sumOf(1, hf.size, hf.h.Sum()), nil
	}
	var all []byte
	for _, p := range hf.pieces {
		all = append(all, p...)
	}
	return sumOf(o.format, hf.size, rootOf(all)), nil
}
