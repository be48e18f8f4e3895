package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// prehasher hashes the big page images while CRIU is still writing them
// and starts their writeback, so that publishing, which happens while the
// target is frozen, has only the tail left to hash and to fsync. CRIU writes
// page images front to back; a file that shrank or was replaced meanwhile
// is hashed again from the start.
type prehasher struct {
	dir   string
	hash  bool // else it only starts writeback: the files will be rewritten
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	files map[string]*partial
}

type partial struct {
	f   *os.File
	ino uint64
	h   fileHasher
	off int64 // bytes fed to h
	wb  int64 // bytes whose writeback was started
	err error // a failed read: h no longer matches any prefix; rehash whole
}

const prehashEvery = 10 * time.Millisecond

func isPageImage(name string) bool {
	return strings.HasPrefix(name, "pages-") && strings.HasSuffix(name, ".img")
}

func startPrehash(dir string, hash bool) *prehasher {
	p := &prehasher{dir: dir, hash: hash, stop: make(chan struct{}), done: make(chan struct{}), files: map[string]*partial{}}
	go p.loop()
	return p
}

func (p *prehasher) loop() {
	defer close(p.done)
	t := time.NewTicker(prehashEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.scan()
		}
	}
}

// scan catches up with every page image; a file it fails to read is
// marked, and the final pass hashes it whole.
func (p *prehasher) scan() {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range entries {
		if !e.Type().IsRegular() || !isPageImage(e.Name()) {
			continue
		}
		pt := p.files[e.Name()]
		if pt == nil {
			f, err := os.Open(filepath.Join(p.dir, e.Name()))
			if err != nil {
				continue
			}
			pt = &partial{f: f, ino: inode(f), h: newFileHasher(FormatVersion)}
			p.files[e.Name()] = pt
		}
		// Writeback runs ahead of the hash, which lags behind CRIU.
		pt.writeback()
		if p.hash && pt.err == nil {
			pt.err = pt.catchUp()
		}
	}
}

// writeback starts the writeback of what was appended since the last
// call, without hashing it.
func (pt *partial) writeback() {
	st, err := pt.f.Stat()
	if err != nil || st.Size() <= pt.wb {
		return
	}
	// Best effort: the final fsync is what makes the data durable.
	_ = unix.SyncFileRange(int(pt.f.Fd()), pt.wb, st.Size()-pt.wb, unix.SYNC_FILE_RANGE_WRITE)
	pt.wb = st.Size()
}

// catchUp hashes what was appended since the last call.
func (pt *partial) catchUp() error {
	st, err := pt.f.Stat()
	if err != nil {
		return err
	}
	return pt.catchUpTo(st.Size())
}

// catchUpTo hashes up to size; the offset advances by what was actually
// read, which is less than asked when the file shrank since its size was
// taken.
func (pt *partial) catchUpTo(size int64) error {
	n := size - pt.off
	if n <= 0 {
		return nil
	}
	read, err := io.Copy(pt.h, io.NewSectionReader(pt.f, pt.off, n))
	pt.off += read
	return err
}

// finish stops the background scan and returns the sums of the files it
// followed, each completed, fsynced and checked to still be the same file,
// now in dir (the staging directory, or where it was renamed to). Files it
// could not vouch for are left out, for the caller to hash whole.
func (p *prehasher) finish(dir string) map[string]FileSum {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]FileSum{}
	for name, pt := range p.files {
		if p.hash {
			if sum, err := pt.seal(filepath.Join(dir, name)); err == nil {
				out[name] = sum
			}
		}
		pt.f.Close()
	}
	p.files = nil
	return out
}

// abort stops the scan and drops its state.
func (p *prehasher) abort() {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range p.files {
		pt.f.Close()
	}
	p.files = nil
}

// seal completes the hash of a file CRIU has closed. It vouches for the
// sum only if the file is the one followed, read without error to its
// current end.
func (pt *partial) seal(path string) (FileSum, error) {
	if pt.err != nil {
		return FileSum{}, pt.err
	}
	st, err := os.Stat(path)
	if err != nil {
		return FileSum{}, err
	}
	if inodeOf(st) != pt.ino || st.Size() < pt.off {
		return FileSum{}, fmt.Errorf("%s changed under the prehash", path)
	}
	if err := pt.catchUpTo(st.Size()); err != nil {
		return FileSum{}, err
	}
	if pt.off != st.Size() {
		return FileSum{}, fmt.Errorf("%s: read %d of %d bytes", path, pt.off, st.Size())
	}
	if err := pt.f.Chmod(0o600); err != nil { // CRIU writes images 0644
		return FileSum{}, err
	}
	if err := pt.f.Sync(); err != nil {
		return FileSum{}, err
	}
	return sumOf(FormatVersion, pt.off, pt.h.Sum()), nil
}

func inode(f *os.File) uint64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return inodeOf(st)
}

func inodeOf(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
