package imagesig

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	priv, pub, err := GenerateKey([]byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(priv), "ENCRYPTED COSIGN PRIVATE KEY") || !strings.Contains(string(pub), "BEGIN PUBLIC KEY") {
		t.Fatalf("key files:\n%s\n%s", priv, pub)
	}
	if _, err := ParsePrivateKey(priv, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("wrong passphrase: %v", err)
	}
	key, err := ParsePrivateKey(priv, []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	const repo, digest = "localhost:5000/ckpt/x", "sha256:" + "ab"
	data := Payload(repo+":v1", digest)
	sig, err := Sign(key, data)
	if err != nil {
		t.Fatal(err)
	}
	if signed, err := Verify(pk, data, sig, digest); err != nil || signed != repo+":v1" {
		t.Fatalf("a good signature: %q, %v", signed, err)
	}
	_, otherPub, _ := GenerateKey(nil)
	other, _ := ParsePublicKey(otherPub)
	forged, _ := Sign(key, Payload(repo, "sha256:cd"))
	for _, tc := range []struct {
		name   string
		key    string
		data   []byte
		sig, d string
		want   string
	}{
		{"wrong key", "other", data, sig, digest, "trusted key"},
		{"another manifest", "", data, sig, "sha256:cd", "not sha256:cd"},
		{"payload changed", "", []byte(strings.Replace(string(data), "x:v1", "x:v2", 1)), sig, digest, "trusted key"},
		{"signature of another payload", "", data, forged, digest, "trusted key"},
		{"not base64", "", data, "%%%", digest, "base64"},
		{"unknown field", "", []byte(`{"critical":{},"optional":null,"extra":1}`), "", digest, ""},
		{"no reference", "", []byte(`{"critical":{"identity":{"docker-reference":""},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}`), "", digest, "names no image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := pk
			if tc.key == "other" {
				k = other
			}
			s := tc.sig
			if s == "" {
				s, _ = Sign(key, tc.data)
			}
			_, err := Verify(k, tc.data, s, tc.d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := base64.StdEncoding.DecodeString(sig); err != nil {
		t.Error(err)
	}
}

func TestRepository(t *testing.T) {
	for ref, want := range map[string]string{
		"localhost:5000/a/b:v1":         "localhost:5000/a/b",
		"localhost:5000/a/b":            "localhost:5000/a/b",
		"localhost:5000/a/b@sha256:abc": "localhost:5000/a/b",
		"reg/a:tag":                     "reg/a",
	} {
		if got := repository(ref); got != want {
			t.Errorf("repository(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestSignDigest(t *testing.T) {
	priv, pub, _ := GenerateKey(nil)
	key, _ := ParsePrivateKey(priv, nil)
	pk, _ := ParsePublicKey(pub)
	sum := sha256.Sum256([]byte("archive"))
	sig, err := SignDigest(key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDigest(pk, sum[:], sig+"\n"); err != nil {
		t.Fatalf("a good signature with its newline: %v", err)
	}
	file := filepath.Join(t.TempDir(), "a.sig")
	os.WriteFile(file, []byte(sig), 0o600)
	if got, err := ReadSignature(file); err != nil || got != sig {
		t.Errorf("ReadSignature: %q, %v", got, err)
	}
	os.WriteFile(file, make([]byte, MaxSignatureBytes+1), 0o600)
	if _, err := ReadSignature(file); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("a signature file over the bound: %v", err)
	}
	other := sha256.Sum256([]byte("archivf"))
	if err := VerifyDigest(pk, other[:], sig); err == nil || !strings.Contains(err.Error(), "trusted key") {
		t.Errorf("another file's sum: %v", err)
	}
}
