// Package registry keeps checkpoint archives in OCI registries as
// checkpoint images, the form CRI-O and Podman restore from: one layer
// whose entries are the archive's (spec.dump, config.dump, checkpoint/…),
// and manifest annotations naming the container, its image and the tools
// that made it. It uses go-containerregistry for the protocol and the
// usual Docker and Podman auth files for credentials.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ckptd/ckptd/errdefs"
)

// Options say how to reach a registry.
type Options struct {
	// Insecure allows plain HTTP (test registries on loopback).
	Insecure bool
}

func (o Options) parse(ref string) (name.Reference, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// ParseRef checks an image reference before any work is done for it.
func ParseRef(ref string, o Options) error {
	_, err := o.parse(ref)
	return err
}

// Push uploads the uncompressed tar stream archive (closed when read) as
// the one layer of a checkpoint image with meta's annotations to ref,
// compressing it on the way: nothing is staged on disk. It returns the
// pushed image as REPOSITORY@DIGEST.
func Push(ctx context.Context, ref string, archive io.ReadCloser, meta Meta, o Options) (string, error) {
	r, err := o.parse(ref)
	if err != nil {
		archive.Close()
		return "", err
	}
	// The layer goes first, alone: its digest is known only once it is
	// streamed, and the manifest names it.
	layer := stream.NewLayer(archive, stream.WithMediaType(types.OCILayer))
	opts := remoteOptions(ctx)
	if err := remote.WriteLayer(r.Context(), layer, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, unavailable(err))
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return "", err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH, OS: "linux",
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return "", err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img = mutate.Annotations(img, meta.annotations()).(v1.Image)
	if err := remote.Write(r, img, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, unavailable(err))
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// Pulled is a checkpoint image's layer, opened for reading.
type Pulled struct {
	// Ref is the image pulled, as REPOSITORY@DIGEST.
	Ref string
	// Digest is the layer's digest ("sha256:…") and Size its length:
	// whoever reads Layer checks what it read against both.
	Digest string
	Size   int64
	// Annotations are the image's manifest annotations.
	Annotations map[string]string
	// Layer is the compressed layer blob, an archive stream.
	Layer io.ReadCloser
}

// Pull opens the layer of the checkpoint image ref. It refuses an image
// that is not a checkpoint image, or one of more than one layer.
func Pull(ctx context.Context, ref string, o Options) (*Pulled, error) {
	r, err := o.parse(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, unavailable(err))
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if !IsCheckpoint(m.Annotations) {
		return nil, fmt.Errorf("%s is not a checkpoint image (no %s annotation): %w", ref, AnnotationName, errdefs.ErrInvalidArgument)
	}
	if len(m.Layers) != 1 {
		return nil, fmt.Errorf("checkpoint image %s has %d layers, want 1: %w", ref, len(m.Layers), errdefs.ErrInvalidArgument)
	}
	desc := m.Layers[0]
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, unavailable(err))
	}
	d, err := img.Digest()
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &Pulled{
		Ref:    r.Context().Digest(d.String()).String(),
		Digest: desc.Digest.String(), Size: desc.Size,
		Annotations: m.Annotations, Layer: layerReader{rc, ref, desc.Digest.String()},
	}, nil
}

// layerReader says which pull and layer a read error (a digest that does
// not match, a cut connection) belongs to.
type layerReader struct {
	io.ReadCloser
	ref, digest string
}

func (l layerReader) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("pull %s: layer %s: %w", l.ref, l.digest, err)
	}
	return n, err
}

// unavailable marks network and registry failures as errdefs.ErrUnavailable,
// and an image the registry does not have as errdefs.ErrNotFound.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	}
	return fmt.Errorf("%v: %w", err, errdefs.ErrUnavailable)
}
