package integration

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	ckreg "github.com/ckptd/ckptd/registry"
)

// TestPushPull: a workload's checkpoint pushed from one ckptd is a
// checkpoint image (one gzip layer of the archive's entries, CRI-O's and
// Podman's annotations); a second ckptd with its own store pulls it,
// names where it came from, verifies it and restores the workload with
// the memory it had.
func TestPushPull(t *testing.T) {
	r := startRegistry(t)
	src := startDaemon(t)
	w := src.runLoad("pp", 16)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	src.create("pp", "--leave-running", "--name", "pp1")
	keys := t.TempDir()
	src.must("certs", "signing-key", keys)
	out := src.must("push", "pp1", r.ref("ckpt/pp:v1"), "--sign", filepath.Join(keys, "cosign.key"))
	if !strings.Contains(out, r.ref("ckpt/pp@sha256:")) {
		t.Errorf("push does not name the image by digest: %s", out)
	}
	checkCheckpointImage(t, r, "ckpt/pp", "v1", "pp")

	dst := startDaemon(t)
	policy := writePolicy(t, map[string]any{r.ref("ckpt"): []any{sigstoreSigned(filepath.Join(keys, "cosign.pub"))}})
	dst.must("pull", r.ref("ckpt/pp:v1"), "--name", "pulled", "--policy", policy)
	var rec struct {
		Checkpoint struct {
			Imported struct {
				Source string `json:"source"`
			} `json:"imported"`
		} `json:"checkpoint"`
	}
	if err := json.Unmarshal([]byte(dst.must("inspect", "pulled", "-o", "json")), &rec); err != nil {
		t.Fatal(err)
	}
	if src := rec.Checkpoint.Imported.Source; !strings.HasPrefix(src, r.ref("ckpt/pp@sha256:")) {
		t.Errorf("pulled checkpoint's source %q, want the image by digest", src)
	}
	dst.must("verify", "pulled")
	src.must("kill", "pp")
	restoresWithMemory(t, dst, "pulled", "ppcopy", hash)
}

// checkCheckpointImage reads repo:tag's manifest and its one layer from
// the registry: the annotations CRI-O and Podman look for name target,
// and the layer holds the archive's entries at its root.
func checkCheckpointImage(t *testing.T, r *registry, repo, tag, target string) {
	t.Helper()
	var m struct {
		MediaType   string            `json:"mediaType"`
		Annotations map[string]string `json:"annotations"`
		Layers      []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	get := func(path, accept string) io.ReadCloser {
		req, _ := http.NewRequest("GET", "http://"+r.addr+"/v2/"+repo+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		return resp.Body
	}
	body := get("/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json")
	err := json.NewDecoder(body).Decode(&m)
	body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"io.kubernetes.cri-o.annotations.checkpoint.name", "io.podman.annotations.checkpoint.name", "org.criu.checkpoint.container.name"} {
		if m.Annotations[k] != target {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], target)
		}
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("checkpoint image layers: %+v, want one tar+gzip", m.Layers)
	}
	blob := get("/blobs/"+m.Layers[0].Digest, "*/*")
	defer blob.Close()
	zr, err := gzip.NewReader(blob)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tr := tar.NewReader(zr); ; {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	for _, want := range []string{"ckptd.json", "checkpoint/inventory.img"} {
		if !slices.Contains(names, want) {
			t.Errorf("checkpoint image layer lacks %s: %v", want, names)
		}
	}
}

// TestPullRefusals: an image that is not a checkpoint, a tag that does
// not exist, a layer damaged in the registry's storage, a bad reference
// and an unknown checkpoint each fail with one line; nothing is listed
// or left in staging.
func TestPullRefusals(t *testing.T) {
	r := startRegistry(t)
	d := startDaemon(t)
	d.runLoad("pr", 16)
	d.create("pr", "--leave-running", "--name", "pr1")
	d.must("push", "pr1", r.ref("ckpt/pr:good"))

	plain, err := random.Image(4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.ref("plain/app:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, plain); err != nil {
		t.Fatal(err)
	}
	d.mustFailAll(t, []failCase{
		{want: "not a checkpoint image", args: []string{"pull", r.ref("plain/app:1")}},
		{want: "MANIFEST_UNKNOWN", args: []string{"pull", r.ref("ckpt/pr:nosuch")}},
		{want: "image reference", args: []string{"pull", "Bad::Ref"}},
		{want: "image reference", args: []string{"push", "pr1", "Bad::Ref"}},
		{want: "not found", args: []string{"push", "nosuch", r.ref("ckpt/x:1")}},
	})
	// Damage the checkpoint layer where the registry keeps it: the
	// largest blob. The pull must fail on its digest.
	blobs := r.blobs(t)
	slices.SortFunc(blobs, func(a, b string) int { return int(size(t, b) - size(t, a)) })
	flipFileByte(t, blobs[0], size(t, blobs[0])/2)
	d.mustFail("checksum", "pull", r.ref("ckpt/pr:good"), "--name", "damaged", "--insecure-skip-verify")
	if cs := d.checkpoints(); len(cs) != 1 {
		t.Errorf("%d checkpoints listed after refused pulls, want 1", len(cs))
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("staging keeps %d entries", len(left))
	}
}

func size(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestPushPullContainer: a container checkpoint pushed from one host's
// ckptd and containerd is pulled by another ckptd with its own store and
// containerd, and restored there: the counter continues at the next
// value and the file it wrote before the checkpoint is there. The same
// checkpoint carried as an exported file restores there as a copy.
func TestPushPullContainer(t *testing.T) {
	r := startRegistry(t)
	a := startContainerd(t, true)
	src := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), a.in.Address)
	logPath := a.run("db", counterScript)
	waitCount(t, logPath, 3)
	c := src.create("ctr:db")
	counts, _ := counterLines(readFile(logPath))
	last := counts[len(counts)-1]
	src.must("push", c.Name, r.ref("ckpt/db:1"))
	checkCheckpointImage(t, r, "ckpt/db", "1", "db")
	file := filepath.Join(t.TempDir(), "db.tar.zst")
	src.must("export", c.Name, file)

	b := startContainerd(t, true)
	dst := startDaemonAt(t, filepath.Join(t.TempDir(), "state"), b.in.Address)
	dst.must("pull", r.ref("ckpt/db:1"), "--name", "db-pulled", "--insecure-skip-verify")
	dst.must("restore", "db-pulled")
	restored := filepath.Join(dst.root, "containers", "default", "db", "output.log")
	waitCount(t, restored, last+2)
	counts, markers := counterLines(readFile(restored))
	if counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored from a pull: starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
	dst.must("import", file, "--name", "db-file")
	dst.must("restore", "db-file", "--name", "db2")
	copied := filepath.Join(dst.root, "containers", "default", "db2", "output.log")
	waitCount(t, copied, last+2)
	if counts, markers := counterLines(readFile(copied)); counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored from an exported file: starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
}

// TestEncryptedPushPull: push --encrypt-to stores a layer no one reads
// without the identity (ckptctl encrypts; ckptd never sees a key); pull
// refuses it without one or with the wrong one, leaving nothing listed,
// and with the right one it restores with the memory it had.
func TestEncryptedPushPull(t *testing.T) {
	r := startRegistry(t)
	d := startDaemon(t)
	w := d.runLoad("epp", 16)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	d.create("epp", "--leave-running", "--name", "epp1")
	dir := t.TempDir()
	right := ageIdentity(t, dir, "right")
	ageIdentity(t, dir, "wrong")
	d.must("push", "epp1", r.ref("ckpt/epp:v1"), "--encrypt-to", right.Recipient().String())
	listed := len(d.checkpoints())
	d.mustFailAll(t, []failCase{
		{want: "give --identity", args: []string{"pull", r.ref("ckpt/epp:v1"), "--insecure-skip-verify"}},
		{want: "did not match", args: []string{"pull", r.ref("ckpt/epp:v1"), "--identity", filepath.Join(dir, "wrong"), "--insecure-skip-verify"}},
	})
	if n := len(d.checkpoints()); n != listed {
		t.Fatalf("refused pulls left %d checkpoints, want %d", n, listed)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("refused pulls left staging %v", left)
	}
	d.must("pull", r.ref("ckpt/epp:v1"), "--identity", filepath.Join(dir, "right"), "--name", "epp-back", "--insecure-skip-verify")
	d.must("kill", "epp")
	restoresWithMemory(t, d, "epp-back", "eppcopy", hash)
}

func sigstoreSigned(keyPath string) map[string]any {
	return map[string]any{"type": "sigstoreSigned", "keyPath": keyPath}
}

// writePolicy writes a trust policy rejecting all but these docker scopes.
func writePolicy(t *testing.T, scopes map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"default":    []any{map[string]any{"type": "reject"}},
		"transports": map[string]any{"docker": scopes},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignedPull: pull checks an image's sigstore signatures against the
// trust policy: a signed image passes; an unsigned one, one signed by
// another key, one whose tag now names another manifest carrying the
// first one's signature, a rejected scope and a missing policy are each
// refused in one line, leaving nothing listed or staged.
func TestSignedPull(t *testing.T) {
	r := startRegistry(t)
	d := startDaemon(t)
	d.runLoad("sp", 4)
	d.create("sp", "--leave-running", "--name", "sp1")
	keys, other := t.TempDir(), t.TempDir()
	d.must("certs", "signing-key", keys)
	d.must("certs", "signing-key", other)
	key := filepath.Join(keys, "cosign.key")
	for _, n := range []string{"sp2", "sp3", "sp4"} {
		d.create("sp", "--leave-running", "--name", n)
	}
	d.must("push", "sp1", r.ref("ckpt/sp:signed"), "--sign", key)
	d.must("push", "sp2", r.ref("ckpt/sp:unsigned"))
	d.must("push", "sp3", r.ref("ckpt/sp:other"), "--sign", filepath.Join(other, "cosign.key"))
	d.must("push", "sp1", r.ref("ckpt/rejected:1"))

	// The tag now names another manifest, which carries the signed one's
	// signature: an attacker copying a signature.
	out := d.must("push", "sp4", r.ref("ckpt/sp:swapped"), "-o", "json")
	var pushed struct{ Image string }
	if err := json.Unmarshal([]byte(out), &pushed); err != nil {
		t.Fatal(err)
	}
	signed := r.ref("ckpt/sp@") + digestOf(t, r, "ckpt/sp", "signed")
	sigs, err := ckreg.Signatures(context.Background(), signed, ckreg.Options{Insecure: true})
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures of %s: %v, %v", signed, sigs, err)
	}
	if err := ckreg.PushSignature(context.Background(), pushed.Image, sigs[0].Payload, sigs[0].Value, ckreg.Options{Insecure: true}); err != nil {
		t.Fatal(err)
	}

	pub := filepath.Join(keys, "cosign.pub")
	policy := writePolicy(t, map[string]any{r.ref("ckpt/sp"): []any{sigstoreSigned(pub)}, r.ref("ckpt/rejected"): []any{map[string]any{"type": "reject"}}})
	listed := len(d.checkpoints())
	d.mustFailAll(t, []failCase{
		{want: "is not signed", args: []string{"pull", r.ref("ckpt/sp:unsigned"), "--policy", policy}},
		{want: "not made by the trusted key", args: []string{"pull", r.ref("ckpt/sp:other"), "--policy", policy}},
		{want: "signature is of manifest", args: []string{"pull", r.ref("ckpt/sp:swapped"), "--policy", policy}},
		{want: "rejects", args: []string{"pull", r.ref("ckpt/rejected:1"), "--policy", policy}},
		{want: "no trust policy", args: []string{"pull", r.ref("ckpt/sp:signed"), "--policy", filepath.Join(t.TempDir(), "none.json")}},
	})
	if n := len(d.checkpoints()); n != listed {
		t.Fatalf("refused pulls left %d checkpoints, want %d", n, listed)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "staging")); len(left) != 0 {
		t.Errorf("refused pulls left staging %v", left)
	}
	d.must("pull", r.ref("ckpt/sp:signed"), "--policy", policy, "--name", "sp-back")
}

// digestOf is the manifest digest the registry serves for repo:tag.
func digestOf(t *testing.T, r *registry, repo, tag string) string {
	t.Helper()
	ref, err := name.ParseReference(r.ref(repo+":"+tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}
