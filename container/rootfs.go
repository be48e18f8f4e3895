package container

import (
	"context"
	"io"
	"os"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/pkg/rootfs"
	cerrdefs "github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// saveRootfs has containerd's differ write the container's writable layer
// (its snapshot against the image) as an uncompressed tar, and copies it
// to path. The blob lives in containerd's content store only under a
// lease, which is dropped at the end; containerd's GC then removes it. It
// is not deleted here: two containers with identical layers share the
// blob, and deleting it under the other's read failed a concurrent
// checkpoint.
func (r *Runtime) saveRootfs(ctx context.Context, snapshotter, key, path string) (string, error) {
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return "", r.wrap(err)
	}
	defer done(context.WithoutCancel(ctx))
	desc, err := rootfs.CreateDiff(ctx, key, r.client.SnapshotService(snapshotter), r.client.DiffService(),
		diff.WithMediaType(ocispec.MediaTypeImageLayer), diff.WithReference("ckptd-rw-"+key))
	if err != nil {
		return "", r.wrap(err)
	}
	cs := r.client.ContentStore()
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return "", r.wrap(err)
	}
	defer ra.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, content.NewReader(ra))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return desc.MediaType, nil
}

// applyRootfs puts a saved writable layer onto the active snapshot key.
func (r *Runtime) applyRootfs(ctx context.Context, snapshotter, key, mediaType, path string) error {
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return r.wrap(err)
	}
	defer done(context.WithoutCancel(ctx))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cs := r.client.ContentStore()
	w, err := content.OpenWriter(ctx, cs, content.WithRef("ckptd-restore-rw-"+key))
	if err != nil {
		return r.wrap(err)
	}
	defer w.Close()
	n, err := io.Copy(w, f)
	if err != nil {
		return r.wrap(err)
	}
	if err := w.Commit(ctx, n, ""); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return r.wrap(err)
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: w.Digest(), Size: n}
	mounts, err := r.client.SnapshotService(snapshotter).Mounts(ctx, key)
	if err != nil {
		return r.wrap(err)
	}
	if _, err := r.client.DiffService().Apply(ctx, desc, mounts); err != nil {
		return r.wrap(err)
	}
	return nil
}
