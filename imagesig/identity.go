package imagesig

import (
	"fmt"
	"strings"
)

// Identity is a sigstoreSigned requirement's signedIdentity: which image
// references a signature may name, as containers/image defines them.
type Identity struct {
	Type             string `json:"type"`
	DockerReference  string `json:"dockerReference,omitempty"`
	DockerRepository string `json:"dockerRepository,omitempty"`
}

// Image is what a signature must speak of: the reference asked for (a
// tag or a digest), its repository and its manifest's digest.
type Image struct {
	Ref, Repo, Digest string
}

func (id *Identity) valid() error {
	switch id.Type {
	case "matchExact", "matchRepoDigestOrExact", "matchRepository":
		if id.DockerReference != "" || id.DockerRepository != "" {
			return fmt.Errorf("signedIdentity %s takes no reference", id.Type)
		}
	case "exactReference":
		if id.DockerReference == "" || id.DockerRepository != "" {
			return fmt.Errorf("signedIdentity exactReference needs dockerReference alone")
		}
	case "exactRepository":
		if id.DockerRepository == "" || id.DockerReference != "" {
			return fmt.Errorf("signedIdentity exactRepository needs dockerRepository alone")
		}
	default:
		return fmt.Errorf("signedIdentity %q: ckptd knows matchExact, matchRepoDigestOrExact, matchRepository, exactReference and exactRepository", id.Type)
	}
	return nil
}

// matches says whether a signature naming signed may stand for img.
// Without a rule it is containers' default, matchRepoDigestOrExact: a
// tag must be signed as that tag, a digest by its repository.
func (id *Identity) matches(img Image, signed string) error {
	typ := "matchRepoDigestOrExact"
	if id != nil {
		typ = id.Type
	}
	byDigest := strings.Contains(img.Ref, "@")
	var ok bool
	switch typ {
	case "matchExact":
		ok = !byDigest && signed == img.Ref
	case "matchRepoDigestOrExact":
		ok = signed == img.Ref || byDigest && repository(signed) == img.Repo
	case "matchRepository":
		ok = repository(signed) == img.Repo
	case "exactReference":
		ok = signed == id.DockerReference
	case "exactRepository":
		ok = repository(signed) == id.DockerRepository
	}
	if !ok {
		return fmt.Errorf("signature is of %s, not of %s (signedIdentity %s)", signed, img.Ref, typ)
	}
	return nil
}

// repository is ref without its tag or digest.
func repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}
