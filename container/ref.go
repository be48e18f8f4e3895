// Package container checkpoints and restores containerd containers: it
// saves a container's CRIU images (through containerd, runc and CRIU), its
// OCI spec and its writable layer, and recreates the container from its
// base image plus those.
package container

import (
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/pkg/identifiers"

	"github.com/ckptd/ckptd/errdefs"
)

// Prefix marks a container target: ctr:NAMESPACE/ID or ctr:ID.
const Prefix = "ctr:"

// Ref names a container in a containerd namespace.
type Ref struct {
	Namespace string
	ID        string
}

// String is the target syntax users type.
func (r Ref) String() string { return Prefix + r.Namespace + "/" + r.ID }

// Name is NAMESPACE/ID, how the store records the target.
func (r Ref) Name() string { return r.Namespace + "/" + r.ID }

// IsRef tells whether a target names a container.
func IsRef(target string) bool { return strings.HasPrefix(target, Prefix) }

// ParseRef reads ctr:NAMESPACE/ID, or ctr:ID in namespace defaultNS.
func ParseRef(target, defaultNS string) (Ref, error) {
	s, ok := strings.CutPrefix(target, Prefix)
	if !ok {
		return Ref{}, fmt.Errorf("%q is not a container target (ctr:NAMESPACE/ID): %w", target, errdefs.ErrInvalidArgument)
	}
	ns, id, found := strings.Cut(s, "/")
	if !found {
		ns, id = defaultNS, s
	}
	return NewRef(ns, id)
}

// NewRef validates a namespace and an ID with containerd's own rules.
func NewRef(ns, id string) (Ref, error) {
	if err := identifiers.Validate(ns); err != nil {
		return Ref{}, fmt.Errorf("container namespace %q: %v: %w", ns, err, errdefs.ErrInvalidArgument)
	}
	if err := identifiers.Validate(id); err != nil {
		return Ref{}, fmt.Errorf("container id %q: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	return Ref{Namespace: ns, ID: id}, nil
}

// RefFromName reverses Ref.Name.
func RefFromName(name string) (Ref, error) {
	ns, id, _ := strings.Cut(name, "/")
	return NewRef(ns, id)
}
