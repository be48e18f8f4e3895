package imagesig

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MaxSignatureBytes bounds a detached signature file.
const MaxSignatureBytes = 4 << 10

// SignDigest signs a file by its SHA-256 sum: the base64 of an ASN.1
// ECDSA signature, which is what cosign sign-blob writes.
func SignDigest(key *ecdsa.PrivateKey, sum []byte) (string, error) {
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifyDigest checks that sig is key's signature of the file with
// SHA-256 sum.
func VerifyDigest(key *ecdsa.PublicKey, sum []byte, sig string) error {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return fmt.Errorf("signature: not base64: %w", err)
	}
	if !ecdsa.VerifyASN1(key, sum, raw) {
		return errors.New("signature: not made by the trusted key")
	}
	return nil
}
