package imagesig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// payloadType is the simple-signing payload's type, which verifiers check.
const payloadType = "cosign container image signature"

// MaxPayloadBytes bounds a signature payload read from a registry.
const MaxPayloadBytes = 64 << 10

type payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// Payload is what is signed for the image whose manifest has digest in
// repository ref (REGISTRY/REPO:TAG, as pushed).
func Payload(ref, digest string) []byte {
	var p payload
	p.Critical.Identity.DockerReference, p.Critical.Image.DockerManifestDigest, p.Critical.Type = ref, digest, payloadType
	p.Optional = map[string]any{"creator": "ckptd"}
	b, _ := json.Marshal(p)
	return b
}

// Sign signs payload with key: the base64 of an ASN.1 ECDSA signature of
// its SHA-256.
func Sign(key *ecdsa.PrivateKey, payload []byte) (string, error) {
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks that sig is key's signature of payload and that the
// payload speaks of the manifest with digest, and returns the reference
// it names, for the trust policy's identity rule. Unknown fields and
// other types are refused, as containers/image refuses them.
func Verify(key *ecdsa.PublicKey, data []byte, sig, digest string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("signature: not base64: %w", err)
	}
	sum := sha256.Sum256(data)
	if !ecdsa.VerifyASN1(key, sum[:], raw) {
		return "", errors.New("signature: not made by the trusted key")
	}
	var p payload
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		return "", fmt.Errorf("signature payload: not a simple signing payload: %v", err)
	}
	switch c := p.Critical; {
	case c.Type != payloadType:
		return "", fmt.Errorf("signature payload: type %q", c.Type)
	case c.Image.DockerManifestDigest != digest:
		return "", fmt.Errorf("signature is of manifest %s, not %s", c.Image.DockerManifestDigest, digest)
	case c.Identity.DockerReference == "":
		return "", errors.New("signature payload names no image")
	}
	return p.Critical.Identity.DockerReference, nil
}
