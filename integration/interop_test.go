package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ckreg "github.com/ckptd/ckptd/registry"
)

// TestSigstoreInterop: signatures in the ecosystem's format, both ways,
// against a real registry. containers/image (the library skopeo is, built
// as test/cimage: Debian's skopeo has sigstore disabled) copies an image
// ckptctl signed under a policy.json requiring sigstoreSigned by its key,
// and refuses an unsigned one and one signed by another key. ckptctl
// pulls an image containers/image signed while copying it, and refuses
// it under another key, with its signature moved to another manifest,
// under another tag, and unsigned, leaving nothing listed.
func TestSigstoreInterop(t *testing.T) {
	cimage := containersImage(t)
	r := startRegistry(t)
	d := startDaemon(t)
	w := d.runLoad("si", 8)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("si", "--leave-running", "--name", "si1")
	// One checkpoint per tag: a manifest's signatures are found by its
	// digest, which two pushes of one checkpoint share.
	for _, n := range []string{"si2", "si3", "si4", "si5"} {
		d.create("si", "--leave-running", "--name", n)
	}
	keys, other := t.TempDir(), t.TempDir()
	pass := filepath.Join(keys, "passphrase")
	writeBytes(t, pass, []byte("correct horse\n"))
	d.must("certs", "signing-key", keys, "--passphrase-file", pass)
	d.must("certs", "signing-key", other)
	key, pub := filepath.Join(keys, "cosign.key"), filepath.Join(keys, "cosign.pub")
	otherPub := filepath.Join(other, "cosign.pub")
	repo := r.ref("ckpt/si")
	d.must("push", "si1", repo+":by-ckptd", "--sign", key, "--sign-passphrase-file", pass)
	d.must("push", "si3", repo+":unsigned")
	d.must("push", "si2", repo+":by-other", "--sign", filepath.Join(other, "cosign.key"))
	d.must("push", "si4", repo+":plain")

	regd := t.TempDir()
	writeBytes(t, filepath.Join(regd, "default.yaml"), []byte("default-docker:\n  use-sigstore-attachments: true\n"))
	policy := writePolicy(t, map[string]any{repo: []any{sigstoreSigned(pub)}})
	anything := filepath.Join(t.TempDir(), "anything.json")
	writeBytes(t, anything, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	copyTo := func(policy, from string, extra ...string) (string, error) {
		args := append([]string{"--policy", policy, "--registries.d", regd}, extra...)
		out, err := exec.Command(cimage, append(args, from, "dir:"+t.TempDir())...).CombinedOutput()
		return string(out), err
	}

	if out, err := copyTo(policy, "docker://"+repo+":by-ckptd"); err != nil {
		t.Fatalf("containers/image refuses the image ckptctl signed: %v: %s", err, out)
	}
	for tag, want := range map[string]string{"unsigned": "signature", "by-other": "signature"} {
		out, err := copyTo(policy, "docker://"+repo+":"+tag)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("containers/image copied %s under the policy: %v: %s", tag, err, out)
		}
	}

	// containers/image signs while it copies; ckptctl checks its work.
	out, err := exec.Command(cimage, "--policy", anything, "--registries.d", regd, "--sign-by-sigstore-private-key", key, "--sign-passphrase-file", pass,
		"docker://"+repo+":unsigned", "docker://"+repo+":by-cimage").CombinedOutput()
	if err != nil {
		t.Fatalf("containers/image signing a copy: %v: %s", err, out)
	}
	signed := repo + "@" + digestOf(t, r, "ckpt/si", "by-cimage")
	sigs, err := ckreg.Signatures(context.Background(), signed, ckreg.Options{Insecure: true})
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures containers/image attached to %s: %v, %v", signed, sigs, err)
	}
	swapped := d.must("push", "si5", repo+":swapped", "-o", "json")
	var pushed struct{ Image string }
	if err := json.Unmarshal([]byte(swapped), &pushed); err != nil {
		t.Fatal(err)
	}
	if err := ckreg.PushSignature(context.Background(), pushed.Image, sigs[0].Payload, sigs[0].Value, ckreg.Options{Insecure: true}); err != nil {
		t.Fatal(err)
	}
	wrongKey := writePolicy(t, map[string]any{repo: []any{sigstoreSigned(otherPub)}})
	listed := len(d.checkpoints())
	d.mustFailAll(t, []failCase{
		{want: "not made by the trusted key", args: []string{"pull", repo + ":by-cimage", "--policy", wrongKey}},
		{want: "signature is of manifest", args: []string{"pull", repo + ":swapped", "--policy", policy}},
		{want: "is not signed", args: []string{"pull", repo + ":plain", "--policy", policy}},
		// The same manifest as by-cimage, whose signature names that tag.
		{want: "not of " + repo + ":unsigned", args: []string{"pull", repo + ":unsigned", "--policy", policy}},
	})
	if n := len(d.checkpoints()); n != listed {
		t.Fatalf("refused pulls left %d checkpoints, want %d", n, listed)
	}
	d.must("pull", repo+":by-cimage", "--policy", policy, "--name", "si-back")
	d.must("kill", "si")
	restoresWithMemory(t, d, "si-back", "sicopy", hash)
}

var cimage struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// containersImage builds test/cimage (its own module, so that ckptd's
// does not carry containers/image) once, next to the other test binaries.
func containersImage(t *testing.T) string {
	t.Helper()
	cimage.once.Do(func() {
		cimage.path = filepath.Join(filepath.Dir(bins.ckptd), "cimage")
		cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-o", cimage.path, ".")
		cmd.Dir = filepath.Join("..", "test", "cimage")
		cmd.Env = append(os.Environ(), "GOWORK=off")
		cimage.out, cimage.err = cmd.CombinedOutput()
	})
	if cimage.err != nil {
		t.Fatalf("build test/cimage: %v\n%s", cimage.err, cimage.out)
	}
	return cimage.path
}
