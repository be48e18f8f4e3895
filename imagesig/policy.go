package imagesig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
// "sigstoreSigned" by the public key at KeyPath (or in KeyData, PEM).
type Requirement struct {
	Type    string `json:"type"`
	KeyPath string `json:"keyPath,omitempty"`
	KeyData []byte `json:"keyData,omitempty"`
}

// maxPolicyBytes bounds a policy file.
const maxPolicyBytes = 1 << 20

// LoadPolicy reads a policy file, refusing what it does not understand.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("trust policy %s is over %d bytes", path, maxPolicyBytes)
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
	for _, reqs := range p.Transports["docker"] {
		out = append(out, reqs)
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
		return nil
	}
	return fmt.Errorf("requirement type %q: ckptd knows reject, insecureAcceptAnything and sigstoreSigned", r.Type)
}

// For is the requirements for repository repo (REGISTRY/PATH): the most
// specific scope that names it, its namespaces or its registry, else the
// default.
func (p *Policy) For(repo string) []Requirement {
	scopes := p.Transports["docker"]
	for s := repo; s != ""; {
		if reqs, ok := scopes[s]; ok {
			return reqs
		}
		i := strings.LastIndexByte(s, '/')
		if i < 0 {
			break
		}
		s = s[:i]
	}
	return p.Default
}

// Check says whether the image with manifest digest in repo, signed by
// sigs, meets reqs: every requirement must hold, and none is no
// permission.
func Check(reqs []Requirement, repo, digest string, sigs []Signature) error {
	if len(reqs) == 0 {
		return fmt.Errorf("the trust policy has no requirement for %s", repo)
	}
	for _, r := range reqs {
		switch r.Type {
		case "reject":
			return fmt.Errorf("the trust policy rejects images of %s", repo)
		case "sigstoreSigned":
			if err := signedBy(r, repo, digest, sigs); err != nil {
				return err
			}
		}
	}
	return nil
}

func signedBy(r Requirement, repo, digest string, sigs []Signature) error {
	pem := r.KeyData
	if r.KeyPath != "" {
		var err error
		if pem, err = os.ReadFile(r.KeyPath); err != nil {
			return fmt.Errorf("trust policy key: %w", err)
		}
	}
	key, err := ParsePublicKey(pem)
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%s@%s is not signed, and the trust policy wants it signed", repo, digest)
	}
	var why []string
	for _, s := range sigs {
		err := Verify(key, s.Payload, s.Value, repo, digest)
		if err == nil {
			return nil
		}
		why = append(why, err.Error())
	}
	return fmt.Errorf("no signature of %s@%s is valid for the trust policy's key: %s", repo, digest, strings.Join(why, "; "))
}
