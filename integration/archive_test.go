package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestExportImport: a checkpoint exported to a file (zstd) and to stdout
// (gzip) imports under new names, from a file and from stdin, verifies,
// and restores with the memory the workload had; the archive is its
// owner's alone.
func TestExportImport(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("ex", 16)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("ex", "--leave-running", "--name", "ex1")
	dir := t.TempDir()
	zst := filepath.Join(dir, "ex1.tar.zst")
	d.must("export", "ex1", zst)
	if st, err := os.Stat(zst); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v, want mode 0600", st, err)
	}
	gz := exportToStdout(t, d, "ex1", "gzip")

	d.must("import", zst, "--name", "ex-file")
	importFromStdin(t, d, gz, "ex-stdin")
	var imported struct {
		Imported struct {
			Source     string `json:"source"`
			OriginalID string `json:"original_id"`
		} `json:"imported"`
	}
	if err := json.Unmarshal([]byte(d.must("inspect", "ex-file", "-o", "json")), &struct {
		Checkpoint any `json:"checkpoint"`
	}{&imported}); err != nil {
		t.Fatal(err)
	}
	if imported.Imported.Source != "ex1.tar.zst" || imported.Imported.OriginalID == "" {
		t.Errorf("imported record: %+v", imported)
	}
	for _, name := range []string{"ex-file", "ex-stdin"} {
		d.must("verify", name)
	}
	d.must("kill", "ex")
	d.must("rm", "ex1")
	restoresWithMemory(t, d, "ex-file", "excopy", hash)
}

// restoresWithMemory restores memload checkpoint ckpt as workload name
// and checks that its memory hashes to hash.
func restoresWithMemory(t *testing.T, d *daemon, ckpt, name, hash string) {
	t.Helper()
	d.must("restore", ckpt, "--name", name)
	c := d.workload(name)
	if got := loadStatus(t, c.Ref.PID, c.Ref.LogPath).Hash; got != hash {
		t.Errorf("%s restored from %s with memory %s, want %s", name, ckpt, got, hash)
	}
}

// TestImportRefusesBadArchives: a tampered archive, a truncated one, one
// with a file its record does not list, and a file that is no archive are
// refused with one line, leaving nothing listed or staged; an entry that
// names a path outside is never written.
func TestImportRefusesBadArchives(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("bad", 16)
	d.create("bad", "--leave-running", "--name", "b1")
	plain := exportToStdout(t, d, "b1", "none")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tampered := append([]byte(nil), plain...)
	tampered[len(tampered)/2] ^= 0xff // inside the pages
	outside := filepath.Join(t.TempDir(), "escaped")
	d.mustFailAll(t, []failCase{
		{want: "damaged", args: []string{"import", write("tampered.tar", tampered), "--name", "t1"}},
		{want: "cut short", args: []string{"import", write("truncated.tar", plain[:len(plain)/3]), "--name", "t2"}},
		{want: "does not list", args: []string{"import", write("extra.tar", withEntries(t, plain, "checkpoint/extra.img")), "--name", "t3"}},
		{want: "not a checkpoint archive", args: []string{"import", write("junk", []byte("not an archive")), "--name", "t4"}},
		{want: "not found", args: []string{"export", "nosuch", filepath.Join(dir, "x")}},
		{want: "compression", args: []string{"export", "b1", filepath.Join(dir, "y"), "--compress", "lzma"}},
	})
	if cs := d.checkpoints(); len(cs) != 1 {
		t.Errorf("%d checkpoints listed after refused imports, want 1", len(cs))
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("staging keeps %d entries", len(left))
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); !os.IsNotExist(err) {
		t.Errorf("a refused export left its file: %v", err)
	}
	hostileArchives(t, d, plain, outside, write)
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Errorf("an archive entry was written outside the state root: %v", err)
	}
	if cs := d.checkpoints(); len(cs) != 1 {
		t.Errorf("%d checkpoints listed after hostile imports, want 1", len(cs))
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("staging keeps %d entries after hostile imports", len(left))
	}
}

// hostileArchives imports archives made to hurt the host (names that
// leave the root, links pointing outside, device nodes, duplicates, an
// oversized record or config.dump, an entry too large for the disk, an
// unknown layout): each is refused with one line, and nothing reaches
// outside.
func hostileArchives(t *testing.T, d *daemon, plain []byte, outside string, write func(string, []byte) string) {
	t.Helper()
	var cases []failCase
	add := func(want, file string, data []byte) {
		cases = append(cases, failCase{want: want, args: []string{"import", write(file, data), "--name", strings.TrimSuffix(file, ".tar")}})
	}
	add("leaves the archive's root", "dotdot.tar", withEntries(t, plain, "checkpoint/../../../../../../.."+outside))
	add("leaves the archive's root", "absolute.tar", withEntries(t, plain, outside))
	add("symbolic link", "symlink.tar", withHeaders(t, plain, &tar.Header{Name: "checkpoint/link.img", Typeflag: tar.TypeSymlink, Linkname: outside}))
	add("hard link", "hardlink.tar", withHeaders(t, plain, &tar.Header{Name: "checkpoint/hard.img", Typeflag: tar.TypeLink, Linkname: outside}))
	add("device node", "device.tar", withHeaders(t, plain, &tar.Header{Name: "checkpoint/dev.img", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}))
	add("appears twice", "duplicate.tar", withEntries(t, plain, "checkpoint/inventory.img"))
	add("ckptd.json of", "huge-record.tar", withHeaders(t, nil, &tar.Header{Name: "ckptd.json", Mode: 0o600, Size: 17 << 20}))
	add("config.dump of", "huge-config.tar", withHeaders(t, nil, &tar.Header{Name: "config.dump", Mode: 0o600, Size: 9 << 20}))
	add("does not fit", "bomb.tar.zst", bomb(t))
	add("more than 20000 entries", "many.tar.zst", nameBomb(t, 100000, 100))
	add("has a name of", "longnames.tar.zst", nameBomb(t, 1000, 64<<10))
	add("not a checkpoint archive", "unknown.tar", withEntries(t, nil, "README", "data/blob"))
	d.mustFailAll(t, cases)
}

// nameBomb is a zstd stream of n directory entries whose names (PAX
// records) are size bytes long: small compressed, gigabytes of names
// kept whole.
func nameBomb(t *testing.T, n, size int) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	long := strings.Repeat("d", size)
	for i := range n {
		name := fmt.Sprintf("%s%d/", long[:max(0, size-12)], i)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o700, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// bomb is a zstd stream of a tar entry that says it holds 1 TiB.
func bomb(t *testing.T) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	if err := tw.WriteHeader(&tar.Header{Name: "checkpoint/pages-1.img", Mode: 0o600, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	tw.Write(make([]byte, 1<<20)) // the rest never comes
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func exportToStdout(t *testing.T, d *daemon, ckpt, comp string) []byte {
	t.Helper()
	cmd := exec.Command(bins.ckptctl, "--socket", d.socket, "export", ckpt, "-", "--compress", comp)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("export %s -: %v: %s", ckpt, err, errOut.String())
	}
	return out.Bytes()
}

func importFromStdin(t *testing.T, d *daemon, archive []byte, name string, extra ...string) {
	t.Helper()
	cmd := exec.Command(bins.ckptctl, append([]string{"--socket", d.socket, "import", "-", "--name", name}, extra...)...)
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import - --name %s: %v: %s", name, err, out)
	}
}

// withEntries copies an uncompressed archive and appends entries with
// these names.
func withEntries(t *testing.T, plain []byte, names ...string) []byte {
	t.Helper()
	var hs []*tar.Header
	for _, n := range names {
		hs = append(hs, &tar.Header{Name: n, Mode: 0o600})
	}
	return withHeaders(t, plain, hs...)
}

// withHeaders is the tar archive plain with entries hs added at its end;
// a regular entry without a size gets 64 bytes.
func withHeaders(t *testing.T, plain []byte, hs ...*tar.Header) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hs {
		var data []byte
		if h.Typeflag == tar.TypeReg || h.Typeflag == 0 {
			if h.Size == 0 {
				h.Size = 64
			}
			data = bytes.Repeat([]byte("x"), int(h.Size))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
