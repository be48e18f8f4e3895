package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// TestEncryptedExport: an export encrypted to an age recipient holds no
// plaintext and is its owner's alone; import refuses it without an
// identity and with the wrong one, leaving nothing listed, and with the
// right one it restores with the memory the workload had. A bad
// recipient fails before anything is written.
func TestEncryptedExport(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("enc", 16)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("enc", "--leave-running", "--name", "enc1")
	dir := t.TempDir()
	right := ageIdentity(t, dir, "right")
	ageIdentity(t, dir, "wrong")

	file := filepath.Join(dir, "enc1.tar.zst.age")
	d.must("export", "enc1", file, "--encrypt-to", right.Recipient().String(), "--compress", "none")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) || bytes.Contains(data, []byte("checkpoint.json")) {
		t.Fatalf("the export is not encrypted: %.80q", data)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("encrypted archive mode %v, want 0600", st.Mode().Perm())
	}
	listed := len(d.checkpoints())
	d.mustFailAll(t, []failCase{
		{want: "encrypted", args: []string{"import", file}},
		{want: "did not match", args: []string{"import", file, "--identity", filepath.Join(dir, "wrong")}},
		{want: "identity file", args: []string{"import", file, "--identity", filepath.Join(dir, "none")}},
		{want: "recipient", args: []string{"export", "enc1", filepath.Join(dir, "x"), "--encrypt-to", "age1bogus"}},
	})
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("an export with a bad recipient wrote its file")
	}
	if n := len(d.checkpoints()); n != listed {
		t.Fatalf("refused imports left %d checkpoints, want %d", n, listed)
	}
	d.must("import", file, "--identity", filepath.Join(dir, "right"), "--name", "enc-back")
	d.must("kill", "enc")
	d.must("restore", "enc-back", "--name", "enccopy")
	c := d.workload("enccopy")
	if got := loadStatus(t, c.Ref.PID, c.Ref.LogPath).Hash; got != hash {
		t.Errorf("restored from the decrypted import with memory %s, want %s", got, hash)
	}
	if out := d.must("inspect", "enc-back"); !strings.Contains(out, "Imported") {
		t.Errorf("inspect does not say where it came from:\n%s", out)
	}
}

// ageIdentity writes a new age identity to dir/name and returns it.
func ageIdentity(t *testing.T, dir, name string) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}
