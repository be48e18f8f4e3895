package chain

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"
)

const base = 0x10000

// level writes a one-process image dir under root/id: memory of len(mem)
// pages at base in one private anonymous VMA (status), all present.
func level(t *testing.T, root, id string, mem [][]byte, status uint32) string {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	n := uint64(len(mem))
	m := &mm.MmEntry{
		MmStartCode: proto.Uint64(0), MmEndCode: proto.Uint64(0), MmStartData: proto.Uint64(0), MmEndData: proto.Uint64(0),
		MmStartStack: proto.Uint64(0), MmStartBrk: proto.Uint64(0), MmBrk: proto.Uint64(0), MmArgStart: proto.Uint64(0),
		MmArgEnd: proto.Uint64(0), MmEnvStart: proto.Uint64(0), MmEnvEnd: proto.Uint64(0), ExeFileId: proto.Uint32(0),
		Vmas: []*vma.VmaEntry{{
			Start: proto.Uint64(base), End: proto.Uint64(base + n*pageSize), Pgoff: proto.Uint64(0), Shmid: proto.Uint64(0),
			Prot: proto.Uint32(3), Flags: proto.Uint32(0x22), Status: proto.Uint32(status), Fd: proto.Int64(-1),
		}},
	}
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	img := binary.LittleEndian.AppendUint32(make([]byte, 8), uint32(len(body)))
	write(t, filepath.Join(dir, "mm-1.img"), append(img, body...))
	pm := &pagemapImage{pagesID: 1}
	pm.add(base, n, pePresent|peLazy) // as CRIU marks anonymous memory
	data, err := pm.encode()
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "pagemap-1.img"), data)
	write(t, filepath.Join(dir, "pages-1.img"), bytes.Join(mem, nil))
	write(t, filepath.Join(dir, "core-1.img"), []byte("core"))
	return dir
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func page(b byte) []byte { return bytes.Repeat([]byte{b}, pageSize) }

// memoryOf reads every page of dir's pagemap-1.img through its chain.
func memoryOf(t *testing.T, dir string) []byte {
	t.Helper()
	top, err := openLayers(dir, "pagemap-1.img")
	if err != nil {
		t.Fatal(err)
	}
	defer top.close()
	var out []byte
	for _, e := range top.pm.entries {
		for addr := e.vaddr; addr < e.end(); {
			src, off, count, _, ok := top.locate(addr, (e.end()-addr)/pageSize)
			if !ok {
				t.Fatalf("page %#x held nowhere", addr)
			}
			b := make([]byte, count*pageSize)
			if err := src.read(b, off); err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
			addr += count * pageSize
		}
	}
	return out
}

const private = vmaRegular | vmaAnonPrivate

func TestDedupChain(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a := [][]byte{page(1), page(2), page(3), page(4)}
	b := [][]byte{page(1), page(9), page(3), page(4)}
	c := [][]byte{page(1), page(9), page(7), page(4)}
	d1 := level(t, root, "00000000000000a1", a, private)
	d2 := level(t, root, "00000000000000a2", b, private)
	d3 := level(t, root, "00000000000000a3", c, private)
	if n, err := Dedup(ctx, d2, d1); err != nil || n != 3 {
		t.Fatalf("dedup b: %d shared, %v; want 3", n, err)
	}
	if n, err := Dedup(ctx, d3, d2); err != nil || n != 3 {
		t.Fatalf("dedup c: %d shared, %v; want 3", n, err)
	}
	if n, err := Dedup(ctx, d3, d2); err != nil || n != 3 {
		t.Fatalf("second dedup of c: %d shared, %v; want the same 3", n, err)
	}
	for dir, want := range map[string][][]byte{d2: b, d3: c} {
		if err := Check(dir); err != nil {
			t.Fatal(err)
		}
		if got := memoryOf(t, dir); !bytes.Equal(got, bytes.Join(want, nil)) {
			t.Errorf("%s: memory through the chain differs from the dump", dir)
		}
	}
	if st, _ := os.Stat(filepath.Join(d3, pagesFile(2))); st == nil || st.Size() != pageSize {
		t.Errorf("c stores %v, want one page", st)
	}
	if depth, err := depthOf(d3); depth != 2 || err != nil {
		t.Errorf("depth %d, %v; want 2", depth, err)
	}

	// Fold b into c: c then reads from a only, and holds what b held.
	out := filepath.Join(root, "00000000000000f3")
	written, needs, err := Rewrite(ctx, d3, out, 1)
	if err != nil || !needs || len(written) != 2 {
		t.Fatalf("fold: %v %v %v", written, needs, err)
	}
	if err := Link(out, d1); err != nil {
		t.Fatal(err)
	}
	if got := memoryOf(t, out); !bytes.Equal(got, bytes.Join(c, nil)) {
		t.Error("folded memory differs")
	}
	if _, err := os.Stat(filepath.Join(out, "core-1.img")); err != nil {
		t.Error("fold did not carry the other files:", err)
	}

	// Flatten: no parent needed, same memory.
	flat := filepath.Join(root, "flat")
	if _, needs, err := Rewrite(ctx, d3, flat, -1); err != nil || needs {
		t.Fatalf("flatten: %v %v", needs, err)
	}
	if got, _ := os.ReadFile(filepath.Join(flat, pagesFile(3))); !bytes.Equal(got, bytes.Join(c, nil)) {
		t.Error("flattened pages differ")
	}

	// A damaged parent: its pages file too short for its pagemap.
	if err := os.Truncate(filepath.Join(d1, pagesFile(1)), pageSize); err != nil {
		t.Fatal(err)
	}
	if err := Check(d3); err == nil {
		t.Error("check passed a chain whose base lost pages")
	}
}

func TestDedupLeavesSpecialMemory(t *testing.T) {
	for _, status := range []uint32{vmaRegular | vmaAnonPrivate | vmaAIORing, vmaRegular | vmaAnonPrivate | vmaExtPlugin, vmaRegular | vmaAnonShared} {
		root := t.TempDir()
		mem := [][]byte{page(5), page(6)}
		d1 := level(t, root, "00000000000000b1", mem, status)
		d2 := level(t, root, "00000000000000b2", mem, status)
		if n, err := Dedup(context.Background(), d2, d1); err != nil || n != 0 {
			t.Errorf("status %#x: %d shared, %v; want none", status, n, err)
		}
		if _, err := os.Lstat(filepath.Join(d2, ParentLink)); err == nil {
			t.Errorf("status %#x: a parent link without shared pages", status)
		}
	}
}

func TestReadPagemapRefusesMalformed(t *testing.T) {
	dir := t.TempDir()
	for name, entries := range map[string][]entry{
		"misaligned": {{vaddr: base + 1, pages: 1, flags: pePresent}},
		"empty":      {{vaddr: base, pages: 0, flags: pePresent}},
		"unordered":  {{vaddr: base + pageSize, pages: 1, flags: pePresent}, {vaddr: base, pages: 1, flags: pePresent}},
		"overflow":   {{vaddr: 1 << 63, pages: 1 << 52, flags: pePresent}},
	} {
		data, err := (&pagemapImage{pagesID: 1, entries: entries}).encode()
		if err != nil {
			continue // refused already
		}
		path := filepath.Join(dir, name)
		write(t, path, data)
		if _, err := readPagemap(path); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
}

// depthOf counts dir's parents through their links.
func depthOf(dir string) (int, error) {
	for n := 0; ; n++ {
		parent, err := ParentOf(dir)
		if err != nil || parent == "" || n > MaxDepth {
			return n, err
		}
		dir = parent
	}
}
