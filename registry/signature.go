package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/imagesig"
)

// Sigstore's attachment of signatures to an image: an OCI image at tag
// sha256-<hex>.sig of the same repository, one layer per signature whose
// blob is the signed payload and whose annotation is the signature.
const (
	SignatureMediaType  = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	maxSignatures       = 16
	maxSignaturePayload = 64 << 10
)

// sigTag is where image (REPOSITORY@DIGEST)'s signatures are kept.
func sigTag(image string, o Options) (name.Tag, name.Digest, error) {
	r, err := o.parse(image)
	if err != nil {
		return name.Tag{}, name.Digest{}, err
	}
	d, ok := r.(name.Digest)
	if !ok {
		return name.Tag{}, name.Digest{}, fmt.Errorf("%s: want REPOSITORY@DIGEST: %w", image, errdefs.ErrInvalidArgument)
	}
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig"), d, nil
}

// PushSignature attaches signature sig of payload to image
// (REPOSITORY@DIGEST), as sigstore does.
func PushSignature(ctx context.Context, image string, payload []byte, sig string, o Options) error {
	tag, _, err := sigTag(image, o)
	if err != nil {
		return err
	}
	// Added to those already there, as containers/image adds them: the
	// same manifest may be signed by several keys.
	base := empty.Image
	existing, err := remote.Image(tag, remoteOptions(ctx)...)
	var terr *transport.Error
	switch {
	case err == nil:
		base = existing
	case errors.As(err, &terr) && terr.StatusCode == 404:
	default:
		return fmt.Errorf("signatures of %s: %w", image, unavailable(err))
	}
	layer := static.NewLayer(payload, types.MediaType(SignatureMediaType))
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer, MediaType: types.MediaType(SignatureMediaType),
		Annotations: map[string]string{SignatureAnnotation: sig},
	})
	if err != nil {
		return err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if err := remote.Write(tag, img, remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("push the signature of %s: %w", image, unavailable(err))
	}
	return nil
}

// Signatures are those attached to image (REPOSITORY@DIGEST); none when
// it has no signature image. Counts and sizes are bounded before reading.
func Signatures(ctx context.Context, image string, o Options) ([]imagesig.Signature, error) {
	tag, _, err := sigTag(image, o)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(tag, remoteOptions(ctx)...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == 404 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("signatures of %s: %w", image, unavailable(err))
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("signatures of %s: %w", image, err)
	}
	var out []imagesig.Signature
	for _, l := range m.Layers {
		if string(l.MediaType) != SignatureMediaType || l.Annotations[SignatureAnnotation] == "" {
			continue
		}
		if len(out) == maxSignatures || l.Size > maxSignaturePayload {
			return nil, fmt.Errorf("signatures of %s: more than %d, or one over %d bytes: %w", image, maxSignatures, maxSignaturePayload, errdefs.ErrInvalidArgument)
		}
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := layer.Compressed() // the blob as stored, checked against its digest
		if err != nil {
			return nil, fmt.Errorf("signatures of %s: %w", image, unavailable(err))
		}
		payload, err := io.ReadAll(io.LimitReader(rc, maxSignaturePayload+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("signatures of %s: %w", image, err)
		}
		out = append(out, imagesig.Signature{Payload: payload, Value: l.Annotations[SignatureAnnotation]})
	}
	return out, nil
}
