package imagesig

import (
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
			err := Check(tc.reqs, repo, digest, tc.sigs)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
