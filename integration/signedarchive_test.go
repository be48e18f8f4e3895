package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSignedArchive: export --sign writes FILE.sig, a signature openssl
// (an implementation that is not ckptd's) verifies as cosign sign-blob's.
// Import checks archives against the trust policy's ckptd-archive scopes:
// a signed one passes, from a file, from stdin and encrypted; a tampered
// one, an unsigned one, one signed by another key and one in a rejected
// directory are each refused in one line, leaving nothing listed or
// staged.
func TestSignedArchive(t *testing.T) {
	d := startDaemon(t)
	w := d.runLoad("sa", 8)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("sa", "--leave-running", "--name", "sa1")
	keys, other, dir, rejected := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	d.must("certs", "signing-key", keys)
	d.must("certs", "signing-key", other)
	key, pub := filepath.Join(keys, "cosign.key"), filepath.Join(keys, "cosign.pub")

	file := filepath.Join(dir, "sa1.tar.zst")
	d.must("export", "sa1", file, "--sign", key)
	opensslVerifies(t, pub, file)
	d.mustFail("give a FILE", "export", "sa1", "-", "--sign", key)

	unsigned := filepath.Join(dir, "unsigned.tar.zst")
	d.must("export", "sa1", unsigned)
	byOther := filepath.Join(dir, "other.tar.zst")
	d.must("export", "sa1", byOther, "--sign", filepath.Join(other, "cosign.key"))
	tampered := filepath.Join(dir, "tampered.tar.zst")
	data := mustRead(t, file)
	data[len(data)/2] ^= 1
	writeBytes(t, tampered, data)
	writeBytes(t, tampered+".sig", mustRead(t, file+".sig"))
	inRejected := filepath.Join(rejected, "sa1.tar.zst")
	writeBytes(t, inRejected, mustRead(t, file))
	writeBytes(t, inRejected+".sig", mustRead(t, file+".sig"))
	ids := t.TempDir()
	id := ageIdentity(t, ids, "id")
	encrypted := filepath.Join(dir, "sa1.tar.zst.age")
	d.must("export", "sa1", encrypted, "--sign", key, "--encrypt-to", id.Recipient().String())

	policy := writeArchivePolicy(t, sigstoreSigned(pub), map[string]any{rejected: []any{map[string]any{"type": "reject"}}})
	listed := len(d.checkpoints())
	d.mustFailAll(t, []failCase{
		{want: "not made by the trusted key", args: []string{"import", tampered, "--policy", policy}},
		{want: "has no signature", args: []string{"import", unsigned, "--policy", policy}},
		{want: "not made by the trusted key", args: []string{"import", byOther, "--policy", policy}},
		{want: "rejects", args: []string{"import", inRejected, "--policy", policy}},
		{want: "not made by the trusted key", args: []string{"import", unsigned, "--policy", policy, "--signature", byOther + ".sig"}},
		{want: "no such file", args: []string{"import", file, "--policy", filepath.Join(dir, "none.json")}},
	})
	if n := len(d.checkpoints()); n != listed {
		t.Fatalf("refused imports left %d checkpoints, want %d", n, listed)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("refused imports left staging %v", left)
	}

	d.must("import", file, "--policy", policy, "--name", "sa-file")
	d.must("import", encrypted, "--policy", policy, "--identity", filepath.Join(ids, "id"), "--name", "sa-enc")
	importFromStdin(t, d, mustRead(t, file), "sa-stdin", "--policy", policy, "--signature", file+".sig")
	d.must("import", unsigned, "--insecure-skip-verify", "--policy", policy, "--name", "sa-skip")
	d.must("kill", "sa")
	restoresWithMemory(t, d, "sa-enc", "sacopy", hash)
}

// opensslVerifies checks file.sig as openssl reads a cosign sign-blob
// signature: base64 of an ECDSA signature of the file's SHA-256.
func opensslVerifies(t *testing.T, pub, file string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(string(mustRead(t, file+".sig")))
	if err != nil {
		t.Fatalf("%s.sig: %v", file, err)
	}
	der := filepath.Join(t.TempDir(), "sig.der")
	writeBytes(t, der, raw)
	out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", der, file).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verified OK")) {
		t.Fatalf("openssl does not verify %s.sig: %v: %s", file, err, out)
	}
}

// writeArchivePolicy writes a trust policy whose default is def, with
// these ckptd-archive scopes.
func writeArchivePolicy(t *testing.T, def any, scopes map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"default": []any{def}, "transports": map[string]any{"ckptd-archive": scopes}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "policy.json")
	writeBytes(t, p, b)
	return p
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
