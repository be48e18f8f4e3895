package chain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Check proves that dir's chain holds every page its pagemaps take from a
// parent: each level's pages file is as long as its pagemap says, and
// every PE_PARENT page is present at some level above. CRIU does not
// check this for shared memory (a missing page there restores as wrong
// data), so a restore asks first.
func Check(dir string) error {
	names, err := pagemaps(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := checkImage(dir, name); err != nil {
			return err
		}
	}
	return nil
}

func checkImage(dir, name string) error {
	top, err := openLayers(dir, name)
	if err != nil {
		return err
	}
	defer top.close()
	for _, e := range top.pm.entries {
		if !e.inParent() {
			continue
		}
		for addr := e.vaddr; addr < e.end(); {
			_, _, count, depth, ok := top.locate(addr, (e.end()-addr)/pageSize)
			if !ok {
				return fmt.Errorf("%s: page %#x of %s is held by no parent (the chain ends after %d levels)",
					dir, addr, name, depth)
			}
			addr += count * pageSize
		}
	}
	return nil
}

// Rewrite writes into outDir, which must not exist, a copy of the image
// directory dir that takes from its chain only what lies beyond absorb
// levels: pages found 1..absorb levels up are copied in (absorb < 0:
// all of them, a self-contained copy). Unchanged files are hard links.
// It returns the names of the files it wrote and whether the copy still
// takes pages from beyond: then it needs a parent link to the directory
// absorb+1 levels up, which the caller makes. outDir gets no parent link
// and no copy of the files named in skip.
func Rewrite(ctx context.Context, dir, outDir string, absorb int, skip ...string) (written []string, needsParent bool, err error) {
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(outDir)
		}
	}()
	names, err := pagemaps(dir)
	if err != nil {
		return nil, false, err
	}
	id, err := nextPagesID(dir)
	if err != nil {
		return nil, false, err
	}
	replaced := map[string]bool{}
	for _, s := range skip {
		replaced[s] = true
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		res, err := rewriteImage(dir, outDir, name, absorb, id)
		if err != nil {
			return nil, false, fmt.Errorf("rewrite %s: %w", name, err)
		}
		if res.pages != "" {
			id++
			replaced[name], replaced[res.oldPages] = true, true
			written = append(written, name, res.pages)
		}
		needsParent = needsParent || res.needsParent
	}
	if err := linkRest(dir, outDir, replaced); err != nil {
		return nil, false, err
	}
	return written, needsParent, syncDir(outDir)
}

type rewriteResult struct {
	pages, oldPages string // the new and old pages file; "" when unchanged
	needsParent     bool
}

func rewriteImage(dir, outDir, name string, absorb int, id uint32) (rewriteResult, error) {
	top, err := openLayers(dir, name)
	if err != nil {
		return rewriteResult{}, err
	}
	defer top.close()
	if !slices.ContainsFunc(top.pm.entries, entry.inParent) {
		return rewriteResult{}, nil
	}
	w, err := newPagesWriter(filepath.Join(outDir, pagesFile(id)))
	if err != nil {
		return rewriteResult{}, err
	}
	defer w.abort()
	out := &pagemapImage{magic: top.pm.magic, pagesID: id}
	buf := make([]byte, chunkPages*pageSize)
	res := rewriteResult{pages: pagesFile(id), oldPages: pagesFile(top.pm.pagesID)}
	for _, e := range top.pm.entries {
		for addr := e.vaddr; addr < e.end(); {
			src, off, count, depth, ok := top.locate(addr, min((e.end()-addr)/pageSize, chunkPages))
			switch {
			case !ok:
				return res, fmt.Errorf("page %#x is held by no parent (the chain ends after %d levels)", addr, depth)
			case depth > 0 && absorb >= 0 && depth > absorb:
				out.add(addr, count, peParent)
				res.needsParent = true
			default:
				b := buf[:count*pageSize]
				if err := src.read(b, off); err != nil {
					return res, err
				}
				if err := w.write(b); err != nil {
					return res, err
				}
				out.add(addr, count, pePresent)
			}
			addr += count * pageSize
		}
	}
	if err := w.commit(); err != nil {
		return res, err
	}
	data, err := out.encode()
	if err != nil {
		return res, err
	}
	return res, writeDurable(filepath.Join(outDir, name), data)
}

// linkRest hard-links dir's regular files, but those replaced, into
// outDir.
func linkRest(dir, outDir string, replaced map[string]bool) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if !de.Type().IsRegular() || replaced[de.Name()] || filepath.Ext(de.Name()) == tmpSuffix {
			continue
		}
		err := os.Link(filepath.Join(dir, de.Name()), filepath.Join(outDir, de.Name()))
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// ReadMemory reads n bytes at addr of the memory pagemap image name of dir
// describes, through its chain (go-criu's reader ignores PE_PARENT).
func ReadMemory(dir, name string, addr uint64, n int) ([]byte, error) {
	if n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("read %d bytes of memory: at most 1 MiB", n)
	}
	top, err := openLayers(dir, name)
	if err != nil {
		return nil, err
	}
	defer top.close()
	first := addr &^ (pageSize - 1)
	buf := make([]byte, 0, n+2*pageSize)
	for a := first; a < addr+uint64(n); {
		src, off, count, _, ok := top.locate(a, (addr+uint64(n)-a+pageSize-1)/pageSize)
		if !ok {
			return nil, fmt.Errorf("%s: page %#x is not in the images", name, a)
		}
		b := make([]byte, count*pageSize)
		if err := src.read(b, off); err != nil {
			return nil, err
		}
		buf = append(buf, b...)
		a += count * pageSize
	}
	return buf[addr-first : addr-first+uint64(n)], nil
}
