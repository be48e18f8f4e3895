package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	escape := "checkpoint/../../../../../../.." + outside
	d.must("import", write("escape.tar", withEntries(t, plain, escape)), "--name", "t5")
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Errorf("an archive entry was written outside the state root: %v", err)
	}
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

func importFromStdin(t *testing.T, d *daemon, archive []byte, name string) {
	t.Helper()
	cmd := exec.Command(bins.ckptctl, "--socket", d.socket, "import", "-", "--name", name)
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import - --name %s: %v: %s", name, err, out)
	}
}

// withEntries copies an uncompressed archive and appends entries with
// these names.
func withEntries(t *testing.T, plain []byte, names ...string) []byte {
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
	for _, n := range names {
		data := []byte(strings.Repeat("x", 64))
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
