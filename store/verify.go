package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/ckptd/ckptd/errdefs"
)

// Verify checks every file listed in c against its size and SHA-256.
// Only proven damage is ErrDataLoss: a file that is missing or does not
// match its checksum. A format this ckptd does not read is
// ErrFailedPrecondition; a cancelled ctx is returned as such; any other
// failure to read says nothing about the checkpoint and is returned plain.
func (s *Store) Verify(ctx context.Context, c *Checkpoint) error {
	return verifyDir(ctx, s.layout.Checkpoint(c.ID), c)
}

// VerifyBeside is Verify on one core, for a verification that runs beside
// a CRIU restore of the same checkpoint: BLAKE3 on one core outruns the
// restore, and the other core stays CRIU's.
// It verifies the ancestors an incremental checkpoint reads pages from too.
func (s *Store) VerifyBeside(ctx context.Context, c *Checkpoint) error {
	if err := verifyFiles(ctx, s.layout.Checkpoint(c.ID), c, hashOptions{workers: 1}); err != nil {
		return err
	}
	anc, err := s.Ancestors(ctx, c)
	if err != nil {
		return err
	}
	for _, a := range anc {
		if err := verifyFiles(ctx, s.layout.Checkpoint(a.ID), a, hashOptions{workers: 1}); err != nil {
			return fmt.Errorf("checkpoint %s reads pages from %s: %w", c.Name, a.Name, err)
		}
	}
	return nil
}

func verifyDir(ctx context.Context, dir string, c *Checkpoint) error {
	return verifyFiles(ctx, dir, c, hashOptions{})
}

// verifyFiles checks c's files in dir, read as o says.
func verifyFiles(ctx context.Context, dir string, c *Checkpoint, o hashOptions) error {
	if c.FormatVersion < 1 || c.FormatVersion > FormatVersion {
		return fmt.Errorf("checkpoint %s has format_version %d, this ckptd reads 1 to %d: %w",
			c.ID, c.FormatVersion, FormatVersion, errdefs.ErrFailedPrecondition)
	}
	if c.IsSealing() {
		return fmt.Errorf("checkpoint %s is still sealing: its files are not yet hashed: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	names := filesOf(c)
	if err := present(dir, c, names); err != nil {
		return err
	}
	o.format = c.FormatVersion
	got, err := sumFiles(ctx, dir, names, o)
	if cerr := ctx.Err(); cerr != nil {
		return cerr // whatever a worker saw, the verification did not finish
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	for _, name := range names {
		if want := c.Files[name]; got[name] != want {
			return fmt.Errorf("checkpoint %s: %s does not match its checksum (size %d, want %d): %w",
				c.ID, name, got[name].Size, want.Size, errdefs.ErrDataLoss)
		}
	}
	return nil
}

// Present checks, without reading them, that c's files are all there as
// regular files of their recorded sizes: a restore's first, cheap look.
// For an incremental checkpoint, its ancestors' too, and that its chain
// holds every page it reads from there.
func (s *Store) Present(ctx context.Context, c *Checkpoint) error {
	if err := present(s.layout.Checkpoint(c.ID), c, filesOf(c)); err != nil {
		return err
	}
	return s.presentChain(ctx, c)
}

func filesOf(c *Checkpoint) []string { return slices.Sorted(maps.Keys(c.Files)) }

func present(dir string, c *Checkpoint, names []string) error {
	for _, name := range names {
		st, err := os.Lstat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("checkpoint %s: %s is missing: %w", c.ID, name, errdefs.ErrDataLoss)
		case err != nil:
			return fmt.Errorf("checkpoint %s: %w", c.ID, err)
		case !st.Mode().IsRegular(): // a FIFO would block its reader
			return fmt.Errorf("checkpoint %s: %s is not a regular file (%v): %w", c.ID, name, st.Mode().Type(), errdefs.ErrDataLoss)
		case st.Size() != c.Files[name].Size:
			return fmt.Errorf("checkpoint %s: %s does not match its checksum (size %d, want %d): %w",
				c.ID, name, st.Size(), c.Files[name].Size, errdefs.ErrDataLoss)
		}
	}
	return nil
}
