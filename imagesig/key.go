// Package imagesig signs and verifies checkpoint images the way sigstore
// (cosign) key-pair signatures do, as containers/image reads and writes
// them: a "simple signing" payload naming the image's repository and
// manifest digest, signed with ECDSA P-256 over its SHA-256, the
// signature base64 in an annotation of a layer stored beside the image.
// Keys are cosign's: a PKIX public key, and a PKCS#8 private key
// encrypted with scrypt and NaCl secretbox.
package imagesig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// PEM block types of cosign's keys.
const (
	privateKeyType = "ENCRYPTED COSIGN PRIVATE KEY"
	publicKeyType  = "PUBLIC KEY"
)

// scrypt parameters cosign (and containers/image) use and insist on.
const scryptN, scryptR, scryptP = 32768, 8, 1

type encryptedKey struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

// GenerateKey makes an ECDSA P-256 key pair: the private key encrypted
// with passphrase, and the public key, both PEM.
func GenerateKey(passphrase []byte) (private, public []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	var e encryptedKey
	e.KDF.Name, e.Cipher.Name = "scrypt", "nacl/secretbox"
	e.KDF.Params.N, e.KDF.Params.R, e.KDF.Params.P = scryptN, scryptR, scryptP
	e.KDF.Salt, e.Cipher.Nonce = make([]byte, 32), make([]byte, 24)
	if _, err := rand.Read(e.KDF.Salt); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(e.Cipher.Nonce); err != nil {
		return nil, nil, err
	}
	secret, err := scrypt.Key(passphrase, e.KDF.Salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, nil, err
	}
	e.Ciphertext = secretbox.Seal(nil, der, (*[24]byte)(e.Cipher.Nonce), (*[32]byte)(secret))
	body, err := json.Marshal(e)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: privateKeyType, Bytes: body}),
		pem.EncodeToMemory(&pem.Block{Type: publicKeyType, Bytes: pub}), nil
}

// ParsePrivateKey decrypts a cosign private key with passphrase.
func ParsePrivateKey(data, passphrase []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != privateKeyType {
		return nil, errors.New("signing key: not a cosign private key (PEM " + privateKeyType + ")")
	}
	var e encryptedKey
	if err := json.Unmarshal(block.Bytes, &e); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	p := e.KDF.Params
	if e.KDF.Name != "scrypt" || e.Cipher.Name != "nacl/secretbox" || p.N != scryptN || p.R != scryptR || p.P != scryptP ||
		len(e.Cipher.Nonce) != 24 || len(e.KDF.Salt) == 0 {
		return nil, errors.New("signing key: not encrypted as cosign encrypts keys (scrypt, nacl/secretbox)")
	}
	secret, err := scrypt.Key(passphrase, e.KDF.Salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, err
	}
	der, ok := secretbox.Open(nil, e.Ciphertext, (*[24]byte)(e.Cipher.Nonce), (*[32]byte)(secret))
	if !ok {
		return nil, errors.New("signing key: wrong passphrase, or a damaged key")
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("signing key: not an ECDSA key")
	}
	return key, nil
}

// ParsePublicKey reads a PEM PKIX ECDSA public key.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("public key: not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	key, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("public key: not an ECDSA key")
	}
	return key, nil
}
