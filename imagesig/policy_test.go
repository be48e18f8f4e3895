package imagesig

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPolicyAndScopes(t *testing.T) {
	p, err := LoadPolicy(writeFile(t, "policy.json", `{"default":[{"type":"reject"}],"transports":{"docker":{
		"reg:5000":[{"type":"insecureAcceptAnything"}],
		"reg:5000/ckpt":[{"type":"sigstoreSigned","keyPath":"/k.pub"}],
		"reg:5000/ckpt/special":[{"type":"reject"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]string{
		"reg:5000/ckpt/app":     "sigstoreSigned",
		"reg:5000/ckpt/special": "reject",
		"reg:5000/other":        "insecureAcceptAnything",
		"elsewhere/ckpt":        "reject",
		"reg:5000/ckpt2/x":      "insecureAcceptAnything",
	} {
		if got := p.For(repo); len(got) != 1 || got[0].Type != want {
			t.Errorf("For(%q) = %+v, want %s", repo, got, want)
		}
	}
	for _, bad := range []string{
		`{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}`,
		`{"default":[{"type":"sigstoreSigned"}]}`,
		`{"default":[{"type":"sigstoreSigned","keyPath":"/a","keyData":"YQ=="}]}`,
		`{"default":[],"unknown":1}`,
		`not json`,
	} {
		if _, err := LoadPolicy(writeFile(t, "bad.json", bad)); err == nil {
			t.Errorf("policy %s accepted", bad)
		}
	}
}

func TestCheck(t *testing.T) {
	priv, pub, _ := GenerateKey(nil)
	key, _ := ParsePrivateKey(priv, nil)
	keyPath := writeFile(t, "k.pub", string(pub))
	const repo, digest = "reg/ckpt/app", "sha256:aa"
	data := Payload(repo+":1", digest)
	sig, _ := Sign(key, data)
	signed := []Requirement{{Type: "sigstoreSigned", KeyPath: keyPath}}
	for _, tc := range []struct {
		name string
		reqs []Requirement
		sigs []Signature
		want string
	}{
		{"signed", signed, []Signature{{data, sig}}, ""},
		{"one of two signatures", signed, []Signature{{data, "AAAA"}, {data, sig}}, ""},
		{"unsigned", signed, nil, "is not signed"},
		{"anything", []Requirement{{Type: "insecureAcceptAnything"}}, nil, ""},
		{"reject", []Requirement{{Type: "reject"}}, []Signature{{data, sig}}, "rejects"},
		{"no requirement", nil, nil, "no requirement"},
		{"both must hold", append([]Requirement{{Type: "insecureAcceptAnything"}}, signed...), nil, "is not signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.reqs, Image{Ref: repo + ":1", Repo: repo, Digest: digest}, tc.sigs)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSignedIdentity(t *testing.T) {
	priv, pub, _ := GenerateKey(nil)
	key, _ := ParsePrivateKey(priv, nil)
	keyPath := writeFile(t, "k.pub", string(pub))
	const digest = "sha256:aa"
	sigOf := func(ref string) []Signature {
		data := Payload(ref, digest)
		sig, _ := Sign(key, data)
		return []Signature{{data, sig}}
	}
	tagged := Image{Ref: "reg/app:v1", Repo: "reg/app", Digest: digest}
	byDigest := Image{Ref: "reg/app@" + digest, Repo: "reg/app", Digest: digest}
	for _, tc := range []struct {
		name   string
		id     *Identity
		img    Image
		signed string
		ok     bool
	}{
		{"default, same tag", nil, tagged, "reg/app:v1", true},
		{"default, another tag", nil, tagged, "reg/app:v2", false},
		{"default, by digest", nil, byDigest, "reg/app:v2", true},
		{"default, another repository", nil, byDigest, "reg/other:v1", false},
		{"matchExact", &Identity{Type: "matchExact"}, tagged, "reg/app:v1", true},
		{"matchExact by digest", &Identity{Type: "matchExact"}, byDigest, "reg/app:v1", false},
		{"matchRepository", &Identity{Type: "matchRepository"}, tagged, "reg/app:v9", true},
		{"matchRepository, other", &Identity{Type: "matchRepository"}, tagged, "reg/app2:v1", false},
		{"exactReference", &Identity{Type: "exactReference", DockerReference: "up/app:1"}, tagged, "up/app:1", true},
		{"exactReference, other", &Identity{Type: "exactReference", DockerReference: "up/app:1"}, tagged, "reg/app:v1", false},
		{"exactRepository", &Identity{Type: "exactRepository", DockerRepository: "up/app"}, tagged, "up/app:7", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]Requirement{{Type: "sigstoreSigned", KeyPath: keyPath, SignedIdentity: tc.id}}, tc.img, sigOf(tc.signed))
			if tc.ok != (err == nil) {
				t.Errorf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
	for _, bad := range []string{
		`{"default":[{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"remapIdentity"}}]}`,
		`{"default":[{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"exactReference"}}]}`,
		`{"default":[{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"matchExact","dockerReference":"a"}}]}`,
	} {
		if _, err := LoadPolicy(writeFile(t, "bad.json", bad)); err == nil {
			t.Errorf("policy %s accepted", bad)
		}
	}
}

func TestArchivePolicy(t *testing.T) {
	p, err := LoadPolicy(writeFile(t, "policy.json", `{"default":[{"type":"insecureAcceptAnything"}],"transports":{
		"docker":{"reg":[{"type":"reject"}]},
		"ckptd-archive":{"/srv/signed":[{"type":"sigstoreSigned","keyPath":"/k.pub"}],"/srv/signed/x.tar.zst":[{"type":"reject"}],"/":[{"type":"insecureAcceptAnything"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"/srv/signed/a.tar.zst":     "sigstoreSigned",
		"/srv/signed/sub/a.tar.zst": "sigstoreSigned",
		"/srv/signed/x.tar.zst":     "reject",
		"/srv/signedx/a.tar.zst":    "insecureAcceptAnything",
		"/tmp/a.tar.zst":            "insecureAcceptAnything",
	} {
		if got := p.ForArchive(file); len(got) != 1 || got[0].Type != want {
			t.Errorf("ForArchive(%q) = %+v, want %s", file, got, want)
		}
	}
	priv, pub, _ := GenerateKey(nil)
	key, _ := ParsePrivateKey(priv, nil)
	signed := []Requirement{{Type: "sigstoreSigned", KeyPath: writeFile(t, "k.pub", string(pub))}}
	sum := sha256.Sum256([]byte("archive"))
	sig, _ := SignDigest(key, sum[:])
	other := sha256.Sum256([]byte("tampered"))
	for _, tc := range []struct {
		name string
		reqs []Requirement
		sum  []byte
		sig  string
		want string
	}{
		{"signed", signed, sum[:], sig, ""},
		{"unsigned", signed, sum[:], "", "has no signature"},
		{"tampered", signed, other[:], sig, "trusted key"},
		{"unsigned, anything", []Requirement{{Type: "insecureAcceptAnything"}}, sum[:], "", ""},
		{"rejected", []Requirement{{Type: "reject"}}, sum[:], sig, "rejects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckArchive(tc.reqs, "/a.tar.zst", tc.sum, tc.sig)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
