package container

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"

	"github.com/ckptd/ckptd/errdefs"
)

// Describe returns what recreating the container elsewhere needs (its base
// image and digest, snapshotter, runtime, labels), without touching it.
// A migration's pre-flight sends it to the destination.
func (r *Runtime) Describe(ctx context.Context, ref Ref) (Source, error) {
	ctx = namespaces.WithNamespace(ctx, ref.Namespace)
	c, err := r.client.LoadContainer(ctx, ref.ID)
	if err != nil {
		return Source{}, fmt.Errorf("container %s: %w", ref, r.wrap(err))
	}
	_, src, err := r.source(ctx, c, ref)
	return src, err
}

// CheckImage says whether this containerd has the base image of src, with
// the same digest, in namespace ns.
func (r *Runtime) CheckImage(ctx context.Context, ns string, src Source) error {
	_, err := r.findImage(namespaces.WithNamespace(ctx, ns), ns, src)
	return err
}

// source reads a container's record and its base image's digest.
func (r *Runtime) source(ctx context.Context, c client.Container, ref Ref) (containers.Container, Source, error) {
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return info, Source{}, r.wrap(err)
	}
	if info.Image == "" {
		return info, Source{}, fmt.Errorf("container %s was not created from an image, so it cannot be recreated: %w", ref, errdefs.ErrFailedPrecondition)
	}
	img, err := r.client.GetImage(ctx, info.Image)
	if err != nil {
		return info, Source{}, fmt.Errorf("base image %s of container %s: %w", info.Image, ref, r.wrap(err))
	}
	// The config digest is the image ID Podman and CRI-O know it by.
	cfg, err := img.Config(ctx)
	if err != nil {
		return info, Source{}, fmt.Errorf("base image %s of container %s: %w", info.Image, ref, r.wrap(err))
	}
	return info, Source{
		Image: info.Image, ImageDigest: img.Target().Digest.String(), ImageID: cfg.Digest.String(),
		Snapshotter: info.Snapshotter, Runtime: info.Runtime.Name, Labels: info.Labels,
	}, nil
}

// findImage looks up src's base image in the namespace of ctx and checks
// its digest.
func (r *Runtime) findImage(ctx context.Context, ns string, src Source) (client.Image, error) {
	img, err := r.client.GetImage(ctx, src.Image)
	if cerrdefs.IsNotFound(err) {
		named := src.ImageDigest
		if named == "" {
			named = "config " + src.ImageID
		}
		return nil, fmt.Errorf("base image %s (%s) is not in containerd namespace %q; pull or import it first: %w",
			src.Image, named, ns, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, r.wrap(err)
	}
	if src.ImageDigest == "" && src.ImageID != "" {
		return sameConfig(ctx, img, src)
	}
	if got := img.Target().Digest.String(); got != src.ImageDigest {
		return nil, fmt.Errorf("base image %s is %s here, but the checkpoint was taken on %s: %w",
			src.Image, got, src.ImageDigest, errdefs.ErrFailedPrecondition)
	}
	return img, nil
}

// sameConfig accepts img for a checkpoint that names its base image by
// config digest (one another engine took) only if img has that config.
func sameConfig(ctx context.Context, img client.Image, src Source) (client.Image, error) {
	cfg, err := img.Config(ctx)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", src.Image, err)
	}
	if got := cfg.Digest.String(); got != src.ImageID {
		return nil, fmt.Errorf("base image %s has config %s here, but the checkpoint was taken on %s: %w",
			src.Image, got, src.ImageID, errdefs.ErrFailedPrecondition)
	}
	return img, nil
}
