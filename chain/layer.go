package chain

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// MaxDepth bounds how many parents a chain may have, whatever its links
// say: a loop or a hostile chain ends here.
const MaxDepth = 64

// maxPagesBytes bounds one pages file (1 PiB): sums of hostile page
// counts stop here instead of wrapping.
const maxPagesBytes = 1 << 50

// parentTarget is the only form of parent link this package writes and
// follows: a sibling checkpoint directory.
var parentTarget = regexp.MustCompile(`^\.\./[0-9a-f]{16}$`)

// layer is one pagemap image of a chain level, with the offset of each of
// its entries' pages in its pages file, and the same image one level up.
type layer struct {
	dir  string
	name string
	pm   *pagemapImage
	offs []int64 // byte offset in the pages file of each entry
	f    *os.File
	next *layer // nil: no parent, or the parent has no such image
}

// ParentOf returns the directory dir's parent link names, or "" without
// one.
func ParentOf(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, ParentLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !parentTarget.MatchString(target) {
		return "", fmt.Errorf("%s: parent link %q is not a sibling checkpoint", dir, target)
	}
	return filepath.Join(filepath.Dir(dir), filepath.Base(target)), nil
}

// openLayers opens image name in dir and in each parent that has it.
// Every level's pages file must hold exactly the pages its pagemap says.
func openLayers(dir, name string) (*layer, error) {
	var top, prev *layer
	for depth := 0; dir != ""; depth++ {
		if depth > MaxDepth {
			return closeAll(top, fmt.Errorf("chain of %s is deeper than %d", name, MaxDepth))
		}
		l, err := openLayer(dir, name)
		if errors.Is(err, fs.ErrNotExist) && depth > 0 {
			break // CRIU too finds no parent image here
		}
		if err != nil {
			return closeAll(top, err)
		}
		if prev == nil {
			top = l
		} else {
			prev.next = l
		}
		prev = l
		if dir, err = ParentOf(dir); err != nil {
			return closeAll(top, err)
		}
	}
	return top, nil
}

func openLayer(dir, name string) (*layer, error) {
	pm, err := readPagemap(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	l := &layer{dir: dir, name: name, pm: pm, offs: make([]int64, len(pm.entries))}
	var off int64
	for i, e := range pm.entries {
		l.offs[i] = off
		if e.present() {
			if e.pages > uint64(maxPagesBytes-off)/pageSize {
				return nil, fmt.Errorf("%s: its present pages exceed %d bytes", filepath.Join(dir, name), int64(maxPagesBytes))
			}
			off += int64(e.pages) * pageSize
		}
	}
	pages := filepath.Join(dir, pagesFile(pm.pagesID))
	if l.f, err = os.Open(pages); err != nil {
		if errors.Is(err, fs.ErrNotExist) && off == 0 {
			return l, nil // no present pages: CRIU never opens it
		}
		return nil, fmt.Errorf("%s: %w", pages, err)
	}
	st, err := l.f.Stat()
	if err == nil && (!st.Mode().IsRegular() || st.Size() != off) {
		err = fmt.Errorf("%s holds %d bytes, its pagemap %s says %d", pages, st.Size(), name, off)
	}
	if err != nil {
		l.f.Close()
		return nil, err
	}
	return l, nil
}

func closeAll(l *layer, err error) (*layer, error) {
	for ; l != nil; l = l.next {
		if l.f != nil {
			l.f.Close()
		}
	}
	return nil, err
}

func (l *layer) close() { closeAll(l, nil) }

// find is the index of the entry holding addr, or -1 and how many pages
// from addr no entry holds (0: none does up to the end).
func (l *layer) find(addr uint64) (int, uint64) {
	es := l.pm.entries
	i := sort.Search(len(es), func(i int) bool { return es[i].end() > addr })
	if i < len(es) && es[i].vaddr <= addr {
		return i, 0
	}
	if i < len(es) {
		return -1, (es[i].vaddr - addr) / pageSize
	}
	return -1, 0
}

// locate finds where the n pages from addr are stored, looking up the
// chain for pages marked PE_PARENT. It returns the layer holding the first
// page present, the byte offset in its pages file, how many pages from
// addr are there contiguously (1 <= count <= n), and the depth of that
// layer (0: l). ok is false when the first page is held nowhere; count
// then says how many pages are held nowhere.
func (l *layer) locate(addr, n uint64) (src *layer, off int64, count uint64, depth int, ok bool) {
	for cur := l; ; depth++ {
		i, gap := cur.find(addr)
		if i < 0 {
			if gap == 0 || gap > n {
				gap = n
			}
			return nil, 0, gap, depth, false
		}
		e := cur.pm.entries[i]
		if left := (e.end() - addr) / pageSize; left < n {
			n = left
		}
		switch {
		case e.present():
			return cur, cur.offs[i] + int64(addr-e.vaddr), n, depth, true
		case e.inParent() && cur.next != nil:
			cur = cur.next
		default: // no parent to read from, or flags CRIU never combines
			return nil, 0, n, depth, false
		}
	}
}

// read reads count pages at off of l's pages file into buf.
func (l *layer) read(buf []byte, off int64) error {
	if l.f == nil {
		return fmt.Errorf("%s: no pages file", filepath.Join(l.dir, l.name))
	}
	if _, err := l.f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("read %s pages at %d: %w", filepath.Join(l.dir, pagesFile(l.pm.pagesID)), off, err)
	}
	return nil
}
