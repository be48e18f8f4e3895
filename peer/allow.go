package peer

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Restrict makes config accept only peers whose certificate carries one
// of the allowed names (its common name or a DNS name), in both
// directions; with no names, any peer the CA signed is accepted.
func Restrict(config *tls.Config, allow []string) {
	if len(allow) == 0 {
		return
	}
	config.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
		cert := cs.PeerCertificates[0]
		for _, name := range append([]string{cert.Subject.CommonName}, cert.DNSNames...) {
			if slices.Contains(allow, name) {
				return nil
			}
		}
		return fmt.Errorf("peer %q is not in peer_allow (%s)", cert.Subject.CommonName, strings.Join(allow, ", "))
	}
}

// Describe says which CA peers must come from and which of its hosts are
// allowed, for ckptctl check.
func Describe(dir string, allow []string) string {
	who := "any host it signed"
	if len(allow) > 0 {
		who = strings.Join(allow, ", ")
	}
	ca := "?"
	if data, err := os.ReadFile(filepath.Join(dir, CAFile)); err == nil {
		if b, _ := pem.Decode(data); b != nil {
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				ca = c.Subject.CommonName
			}
		}
	}
	return fmt.Sprintf("CA %q (%s); peers allowed: %s", ca, dir, who)
}
