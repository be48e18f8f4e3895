// Package chain stores CRIU page images incrementally, without the
// kernel's soft-dirty tracking: after a full dump, the pages equal to the
// parent checkpoint's at the same address are dropped from the pages file
// and marked PE_PARENT in the pagemap, and a "parent" symlink names the
// parent's directory. CRIU's restore reads those pages from the chain by
// address (criu/pagemap.c). The package also checks that a chain covers
// every page its images point to, and rewrites a checkpoint so that it no
// longer needs its parent (fold) or any ancestor (flatten).
package chain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"google.golang.org/protobuf/proto"
)

const (
	pageSize = 4096
	// ParentLink is the symlink CRIU follows to a checkpoint's parent
	// images (CR_PARENT_LINK).
	ParentLink = "parent"

	// Pagemap entry flags (criu/include/pagemap.h).
	peParent  = 1 << 0
	peLazy    = 1 << 1
	pePresent = 1 << 2

	maxImage = 64 << 20 // a pagemap or mm image larger than this is refused
	maxEntry = 1 << 20  // one protobuf entry
)

var (
	pagemapName = regexp.MustCompile(`^pagemap-(shmem-)?[0-9]+\.img$`)
	pagesName   = regexp.MustCompile(`^pages-([0-9]+)\.img$`)
)

// entry is one pagemap entry: pages pages from vaddr, with flags.
type entry struct {
	vaddr, pages uint64
	flags        uint32
}

func (e entry) end() uint64 { return e.vaddr + e.pages*pageSize }

// present: the pages are in this level's pages file. CRIU also marks the
// pages a lazy restore could fetch later (PE_LAZY) in every dump.
func (e entry) present() bool { return e.flags&pePresent != 0 && e.flags&peParent == 0 }

// inParent: the pages are read from the parent.
func (e entry) inParent() bool { return e.flags&peParent != 0 && e.flags&pePresent == 0 }

// pagemapImage is a decoded pagemap-*.img.
type pagemapImage struct {
	magic   [8]byte // CRIU's two magics, kept as read
	pagesID uint32
	entries []entry
}

func pagesFile(id uint32) string { return "pages-" + strconv.FormatUint(uint64(id), 10) + ".img" }

// presentPages is how many pages the image's pages file holds.
func (p *pagemapImage) presentPages() uint64 {
	var n uint64
	for _, e := range p.entries {
		if e.present() {
			n += e.pages
		}
	}
	return n
}

// readFramed reads an image of size-prefixed protobuf entries after its
// two magics, refusing sizes before allocating for them.
func readFramed(path string) (magic [8]byte, bodies [][]byte, err error) {
	b, err := readCapped(path, maxImage)
	if err != nil {
		return magic, nil, err
	}
	if len(b) < 8 {
		return magic, nil, fmt.Errorf("malformed image %s: %d bytes", filepath.Base(path), len(b))
	}
	copy(magic[:], b)
	for off := 8; off < len(b); {
		if len(b)-off < 4 {
			return magic, nil, fmt.Errorf("malformed image %s: truncated entry at %d", filepath.Base(path), off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > maxEntry || n > len(b)-off {
			return magic, nil, fmt.Errorf("malformed image %s: entry of %d bytes at %d", filepath.Base(path), n, off)
		}
		bodies = append(bodies, b[off:off+n])
		off += n
	}
	return magic, bodies, nil
}

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return nil, fmt.Errorf("image %s: not a regular file of at most %d bytes", filepath.Base(path), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	return b, nil
}

// readPagemap decodes a pagemap image and checks that its entries are
// page-aligned, ascending and disjoint, as CRIU's reader assumes.
func readPagemap(path string) (*pagemapImage, error) {
	magic, bodies, err := readFramed(path)
	if err != nil {
		return nil, err
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("pagemap %s: no head", filepath.Base(path))
	}
	var head pagemap.PagemapHead
	if err := proto.Unmarshal(bodies[0], &head); err != nil {
		return nil, fmt.Errorf("pagemap %s: head: %w", filepath.Base(path), err)
	}
	p := &pagemapImage{magic: magic, pagesID: head.GetPagesId(), entries: make([]entry, 0, len(bodies)-1)}
	var last uint64
	for i, body := range bodies[1:] {
		var pe pagemap.PagemapEntry
		if err := proto.Unmarshal(body, &pe); err != nil {
			return nil, fmt.Errorf("pagemap %s: entry %d: %w", filepath.Base(path), i, err)
		}
		e := entry{vaddr: pe.GetVaddr(), pages: uint64(pe.GetCompatNrPages()), flags: pePresent}
		if pe.NrPages != nil { // CRIU 4.2 writes both; 4.1 only the compat field
			e.pages = pe.GetNrPages()
		}
		if pe.Flags != nil {
			e.flags = pe.GetFlags()
		} else if pe.GetInParent() {
			e.flags = peParent
		}
		if e.vaddr%pageSize != 0 || e.pages == 0 || e.pages > (math.MaxUint64-e.vaddr)/pageSize || e.vaddr < last {
			return nil, fmt.Errorf("pagemap %s: entry %d (%#x, %d pages) is misaligned, empty, overflowing or out of order",
				filepath.Base(path), i, e.vaddr, e.pages)
		}
		last = e.end()
		p.entries = append(p.entries, e)
	}
	return p, nil
}

// encode is the image's bytes: CRIU 4.2's nr_pages and 4.1's
// compat_nr_pages both set, flags only (never the legacy in_parent).
func (p *pagemapImage) encode() ([]byte, error) {
	out := append([]byte(nil), p.magic[:]...)
	add := func(m proto.Message) error {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
		return nil
	}
	if err := add(&pagemap.PagemapHead{PagesId: proto.Uint32(p.pagesID)}); err != nil {
		return nil, err
	}
	for _, e := range p.entries {
		if e.pages > math.MaxUint32 {
			return nil, fmt.Errorf("pagemap entry at %#x: %d pages do not fit CRIU's compat field", e.vaddr, e.pages)
		}
		if err := add(&pagemap.PagemapEntry{
			Vaddr: proto.Uint64(e.vaddr), CompatNrPages: proto.Uint32(uint32(e.pages)),
			Flags: proto.Uint32(e.flags), NrPages: proto.Uint64(e.pages),
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeDurable writes data to path through a temporary file, fsynced and
// renamed: a reader sees the old file or the new one.
func writeDurable(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// tmpSuffix marks files this package is writing; a rewrite interrupted by
// a crash leaves them, and the next one removes them.
const tmpSuffix = ".chain-tmp"

// pagemaps lists the pagemap images of dir.
func pagemaps(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		if de.Type().IsRegular() && pagemapName.MatchString(de.Name()) {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// nextPagesID is an id no pages file of dir has.
func nextPagesID(dir string) (uint32, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var max uint64
	for _, de := range des {
		if m := pagesName.FindStringSubmatch(de.Name()); m != nil {
			if n, err := strconv.ParseUint(m[1], 10, 32); err == nil && n > max {
				max = n
			}
		}
	}
	if max >= math.MaxUint32 {
		return 0, errors.New("no free pages image id")
	}
	return uint32(max + 1), nil
}

// removeStale removes what an interrupted rewrite of dir left: temporary
// files and pages files no pagemap names.
func removeStale(dir string) error {
	names, err := pagemaps(dir)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, n := range names {
		p, err := readPagemap(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		used[pagesFile(p.pagesID)] = true
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		name := de.Name()
		stale := filepath.Ext(name) == tmpSuffix || (pagesName.MatchString(name) && !used[name])
		if stale {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
