package imagesig

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Signature is one signature attached to an image: the signed payload
// and the base64 signature.
type Signature struct {
	Payload []byte
	Value   string
}

// Policy says which checkpoint images a pull accepts, in the shape of
// containers' policy.json: requirements per registry, namespace or
// repository of the docker transport, and a default.
type Policy struct {
	Default    []Requirement                       `json:"default"`
	Transports map[string]map[string][]Requirement `json:"transports"`
}

// Requirement is one rule: "reject", "insecureAcceptAnything", or
// "sigstoreSigned" by the public key at KeyPath (or in KeyData, PEM),
// naming an image SignedIdentity allows.
type Requirement struct {
	Type           string    `json:"type"`
	KeyPath        string    `json:"keyPath,omitempty"`
	KeyData        []byte    `json:"keyData,omitempty"`
	SignedIdentity *Identity `json:"signedIdentity,omitempty"`
}

// ArchiveTransport is the policy's transport for ckptd archives: its
// scopes are absolute paths of files or of directories holding them.
// containers/image leaves transports it does not know alone, so one
// policy.json serves skopeo and ckptd.
const ArchiveTransport = "ckptd-archive"

// maxPolicyBytes bounds a policy file.
const maxPolicyBytes = 1 << 20

// LoadPolicy reads a policy file, refusing what it does not understand.
func LoadPolicy(path string) (*Policy, error) {
	data, err := readBounded(path, "trust policy", maxPolicyBytes)
	if err != nil {
		return nil, err
	}
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("trust policy %s: %w", path, err)
	}
	for _, reqs := range append([][]Requirement{p.Default}, p.scopes()...) {
		for _, r := range reqs {
			if err := r.valid(); err != nil {
				return nil, fmt.Errorf("trust policy %s: %w", path, err)
			}
		}
	}
	return &p, nil
}

func (p *Policy) scopes() [][]Requirement {
	var out [][]Requirement
	for _, t := range []string{"docker", ArchiveTransport} {
		for _, reqs := range p.Transports[t] {
			out = append(out, reqs)
		}
	}
	return out
}

func (r Requirement) valid() error {
	switch r.Type {
	case "reject", "insecureAcceptAnything":
		return nil
	case "sigstoreSigned":
		if (r.KeyPath == "") == (len(r.KeyData) == 0) {
			return errors.New("sigstoreSigned needs one of keyPath and keyData")
		}
		if r.SignedIdentity != nil {
			return r.SignedIdentity.valid()
		}
		return nil
	}
	return fmt.Errorf("requirement type %q: ckptd knows reject, insecureAcceptAnything and sigstoreSigned", r.Type)
}

// For is the requirements for repository repo (REGISTRY/PATH): the most
// specific scope that names it, its namespaces or its registry, else the
// default.
func (p *Policy) For(repo string) []Requirement {
	return p.scoped("docker", repo, "/")
}

// ForArchive is the requirements for the archive at the absolute path
// file: the scope of the file or of its nearest directory, else the
// default.
func (p *Policy) ForArchive(file string) []Requirement {
	return p.scoped(ArchiveTransport, filepath.Clean(file), string(filepath.Separator))
}

func (p *Policy) scoped(transport, name, sep string) []Requirement {
	scopes := p.Transports[transport]
	for s := name; s != ""; {
		if reqs, ok := scopes[s]; ok {
			return reqs
		}
		i := strings.LastIndex(s, sep)
		if i < 0 || s == sep {
			break
		}
		if s = s[:i]; s == "" {
			s = sep
		}
	}
	return p.Default
}

// Check says whether img, signed by sigs, meets reqs: every requirement
// must hold, and none is no permission.
func Check(reqs []Requirement, img Image, sigs []Signature) error {
	return check(reqs, img.Repo, func(r Requirement, key *ecdsa.PublicKey) error {
		if len(sigs) == 0 {
			return fmt.Errorf("%s@%s is not signed, and the trust policy wants it signed", img.Repo, img.Digest)
		}
		var why []string
		for _, s := range sigs {
			signed, err := Verify(key, s.Payload, s.Value, img.Digest)
			if err == nil {
				if err = r.SignedIdentity.matches(img, signed); err == nil {
					return nil
				}
			}
			why = append(why, err.Error())
		}
		return fmt.Errorf("no signature of %s@%s is valid for the trust policy's key: %s", img.Repo, img.Digest, strings.Join(why, "; "))
	})
}

// CheckArchive says whether the archive file with SHA-256 sum, whose
// detached signature is sig ("" when it has none), meets reqs.
func CheckArchive(reqs []Requirement, file string, sum []byte, sig string) error {
	return check(reqs, file, func(_ Requirement, key *ecdsa.PublicKey) error {
		if sig == "" {
			return fmt.Errorf("%s has no signature (FILE.sig), and the trust policy wants it signed", file)
		}
		if err := VerifyDigest(key, sum, sig); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		return nil
	})
}

func check(reqs []Requirement, subject string, signed func(Requirement, *ecdsa.PublicKey) error) error {
	if len(reqs) == 0 {
		return fmt.Errorf("the trust policy has no requirement for %s", subject)
	}
	for _, r := range reqs {
		switch r.Type {
		case "reject":
			return fmt.Errorf("the trust policy rejects %s", subject)
		case "sigstoreSigned":
			key, err := r.key()
			if err != nil {
				return err
			}
			if err := signed(r, key); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r Requirement) key() (*ecdsa.PublicKey, error) {
	pem := r.KeyData
	if r.KeyPath != "" {
		var err error
		if pem, err = os.ReadFile(r.KeyPath); err != nil {
			return nil, fmt.Errorf("trust policy key: %w", err)
		}
	}
	return ParsePublicKey(pem)
}
