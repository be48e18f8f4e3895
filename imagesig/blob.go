package imagesig

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSignatureBytes bounds a detached signature file.
const MaxSignatureBytes = 4 << 10

// ReadSignature is the detached signature in file.
func ReadSignature(file string) (string, error) {
	b, err := readBounded(file, "signature", MaxSignatureBytes)
	return string(b), err
}

// readBounded reads file, refusing one over max bytes (what says what it
// should be) before it holds more.
func readBounded(file, what string, max int) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s %s is over %d bytes", what, file, max)
	}
	return data, nil
}

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
