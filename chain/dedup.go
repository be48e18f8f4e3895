package chain

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// chunkPages is how many pages are compared per read.
const chunkPages = 256

// Dedup rewrites the full dump in dir so that the pages equal to those of
// the checkpoint in parentDir (at the same address of the same pagemap
// image, through parentDir's own chain) are read from there: they leave
// dir's pages files and become PE_PARENT entries, and dir gets a parent
// link to parentDir, a sibling. It returns how many pages dir's images
// then read from the chain; with none, dir is left without a link.
//
// Every step leaves dir restorable: new pages files are written and
// fsynced before the pagemap naming them is renamed into place, and the
// old pages file is removed only after. Dedup again after a crash
// finishes the job.
func Dedup(ctx context.Context, dir, parentDir string) (shared uint64, err error) {
	if err := removeStale(dir); err != nil {
		return 0, err
	}
	el, err := readEligibility(dir)
	if err != nil {
		return 0, err
	}
	names, err := pagemaps(dir)
	if err != nil {
		return 0, err
	}
	if err := Link(dir, parentDir); err != nil {
		return 0, err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := dedupImage(dir, parentDir, name, el); err != nil {
			return 0, fmt.Errorf("deduplicate %s: %w", name, err)
		}
	}
	if shared, err = ParentPages(dir); err != nil {
		return 0, err
	}
	if shared == 0 {
		if err := os.Remove(filepath.Join(dir, ParentLink)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	return shared, syncDir(dir)
}

// Link points dir's parent link at parentDir, a sibling, replacing any
// other.
func Link(dir, parentDir string) error {
	target := "../" + filepath.Base(parentDir)
	link := filepath.Join(dir, ParentLink)
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + tmpSuffix
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// ParentPages counts the pages dir's images read from its chain.
func ParentPages(dir string) (uint64, error) {
	names, err := pagemaps(dir)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, name := range names {
		pm, err := readPagemap(filepath.Join(dir, name))
		if err != nil {
			return 0, err
		}
		for _, e := range pm.entries {
			if e.inParent() {
				n += e.pages
			}
		}
	}
	return n, nil
}

// dedupImage deduplicates one pagemap image of dir against parentDir.
func dedupImage(dir, parentDir, name string, el *eligibility) error {
	parent, err := openLayers(parentDir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the parent has no such image: nothing to share
	}
	if err != nil {
		return fmt.Errorf("parent %s: %w", parentDir, err)
	}
	defer parent.close()
	cur, err := openLayer(dir, name)
	if err != nil {
		return err
	}
	defer cur.close()
	for _, e := range cur.pm.entries {
		if !e.present() && !e.inParent() {
			return nil // flags this package does not know: left as CRIU wrote them
		}
	}
	id, err := nextPagesID(dir)
	if err != nil {
		return err
	}
	w, err := newPagesWriter(filepath.Join(dir, pagesFile(id)))
	if err != nil {
		return err
	}
	defer w.abort()
	out := &pagemapImage{magic: cur.pm.magic, pagesID: id}
	var shared uint64
	buf, pbuf := make([]byte, chunkPages*pageSize), make([]byte, chunkPages*pageSize)
	for i, e := range cur.pm.entries {
		if e.inParent() {
			out.add(e.vaddr, e.pages, e.flags)
			continue
		}
		for done := uint64(0); done < e.pages; {
			n := min(e.pages-done, chunkPages)
			addr, chunk := e.vaddr+done*pageSize, buf[:n*pageSize]
			if err := cur.read(chunk, cur.offs[i]+int64(done*pageSize)); err != nil {
				return err
			}
			same, err := sameAsParent(parent, name, el, addr, chunk, pbuf)
			if err != nil {
				return err
			}
			for p := uint64(0); p < n; p++ {
				if same[p] {
					out.add(addr+p*pageSize, 1, peParent)
					shared++
					continue
				}
				out.add(addr+p*pageSize, 1, e.flags) // present, maybe lazy
				if err := w.write(chunk[p*pageSize : (p+1)*pageSize]); err != nil {
					return err
				}
			}
			done += n
		}
	}
	if shared == 0 {
		return nil
	}
	if err := w.commit(); err != nil {
		return err
	}
	return replacePagemap(dir, name, out, cur.pm.pagesID)
}

// sameAsParent reports, for each page of chunk (at addr), whether the
// parent chain holds the same bytes at the same address and the page may
// be taken from there.
func sameAsParent(parent *layer, name string, el *eligibility, addr uint64, chunk, pbuf []byte) ([]bool, error) {
	n := uint64(len(chunk) / pageSize)
	same := make([]bool, n)
	for p := uint64(0); p < n; {
		src, off, count, _, ok := parent.locate(addr+p*pageSize, n-p)
		if ok {
			b := pbuf[:count*pageSize]
			if err := src.read(b, off); err != nil {
				return nil, err
			}
			for k := uint64(0); k < count; k++ {
				a := addr + (p+k)*pageSize
				page := chunk[(p+k)*pageSize : (p+k+1)*pageSize]
				same[p+k] = el.allows(name, a) && bytes.Equal(page, b[k*pageSize:(k+1)*pageSize])
			}
		}
		p += count
	}
	return same, nil
}

// add appends n pages at addr with flags, merging with the last entry
// when they continue it.
func (p *pagemapImage) add(addr, n uint64, flags uint32) {
	if k := len(p.entries); k > 0 && p.entries[k-1].flags == flags && p.entries[k-1].end() == addr {
		p.entries[k-1].pages += n
		return
	}
	p.entries = append(p.entries, entry{vaddr: addr, pages: n, flags: flags})
}

// replacePagemap installs the rewritten pagemap name of dir, then removes
// the pages file the old one named.
func replacePagemap(dir, name string, pm *pagemapImage, oldPagesID uint32) error {
	data, err := pm.encode()
	if err != nil {
		return err
	}
	if err := writeDurable(filepath.Join(dir, name), data); err != nil {
		return err
	}
	if oldPagesID == pm.pagesID {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, pagesFile(oldPagesID))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// pagesWriter writes a new pages file under a temporary name; commit
// fsyncs it and gives it its name.
type pagesWriter struct {
	path string
	f    *os.File
	bw   *bufio.Writer
}

func newPagesWriter(path string) (*pagesWriter, error) {
	f, err := os.OpenFile(path+tmpSuffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &pagesWriter{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (w *pagesWriter) write(b []byte) error {
	_, err := w.bw.Write(b)
	return err
}

func (w *pagesWriter) commit() error {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err == nil {
		err = os.Rename(w.path+tmpSuffix, w.path)
	}
	return err
}

// abort removes an uncommitted file.
func (w *pagesWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.path + tmpSuffix)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
