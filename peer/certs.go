// Package peer is how ckptd daemons on different hosts trust each other:
// mutual TLS where both sides present a certificate signed by the one CA
// the operator configured. ckptctl creates a test CA and host certificates
// with it.
package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// Files of a CA directory and of a host's credentials directory.
const (
	CAFile   = "ca.pem"
	CAKey    = "ca-key.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// validity of what ckptctl issues.
const validity = 365 * 24 * time.Hour

// NewCA writes a fresh CA certificate and key into dir, which must not
// hold one already.
func NewCA(dir, name string) error {
	if err := refuseOverwrite(dir, CAFile, CAKey); err != nil {
		return err
	}
	key, tmpl, err := newKey(name)
	if err != nil {
		return err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePair(dir, CAFile, CAKey, der, key)
}

// IssueHost writes a certificate for host name, valid for the given IP
// addresses and DNS names, signed by the CA in caDir, into outDir. The
// certificate serves both ends of a connection: a ckptd is server to some
// peers and client to others.
func IssueHost(caDir, outDir, name string, ips []net.IP, dnsNames []string) error {
	if len(ips) == 0 && len(dnsNames) == 0 {
		return fmt.Errorf("host certificate %q needs at least one IP address or DNS name: %w", name, errdefs.ErrInvalidArgument)
	}
	if err := refuseOverwrite(outDir, CertFile, KeyFile); err != nil {
		return err
	}
	ca, err := tls.LoadX509KeyPair(filepath.Join(caDir, CAFile), filepath.Join(caDir, CAKey))
	if err != nil {
		return fmt.Errorf("load CA from %s: %w", caDir, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return err
	}
	key, tmpl, err := newKey(name)
	if err != nil {
		return err
	}
	tmpl.IPAddresses, tmpl.DNSNames = ips, dnsNames
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return err
	}
	if err := writePair(outDir, CertFile, KeyFile, der, key); err != nil {
		return err
	}
	// The host needs the CA certificate to check its peers.
	data, err := os.ReadFile(filepath.Join(caDir, CAFile))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, CAFile), data, 0o644)
}

// Config loads a host's credentials from dir: its certificate and key and
// the CA that every peer must be signed by, in both directions.
func Config(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("load host certificate from %s: %w", dir, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate: %w", filepath.Join(dir, CAFile), errdefs.ErrInvalidArgument)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// newKey makes a key pair and the certificate template common to a CA
// and a host: a random serial, the name, a year's validity.
func newKey(name string) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return key, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"ckptd"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
	}, nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// refuseOverwrite keeps an existing key from being replaced by mistake.
func refuseOverwrite(dir string, names ...string) error {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first to replace it: %w", p, errdefs.ErrAlreadyExists)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
