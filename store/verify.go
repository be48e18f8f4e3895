package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"

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

func verifyDir(ctx context.Context, dir string, c *Checkpoint) error {
	if c.FormatVersion != FormatVersion {
		return fmt.Errorf("checkpoint %s has format_version %d, this ckptd reads %d: %w",
			c.ID, c.FormatVersion, FormatVersion, errdefs.ErrFailedPrecondition)
	}
	names := make([]string, 0, len(c.Files))
	for n := range c.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	err := forEachParallel(names, func(name string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := c.Files[name]
		got, err := sumFile(filepath.Join(dir, name), false)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("checkpoint %s: %s is missing: %w", c.ID, name, errdefs.ErrDataLoss)
		case err != nil:
			return fmt.Errorf("checkpoint %s: %s: %w", c.ID, name, err)
		case got != want:
			return fmt.Errorf("checkpoint %s: %s does not match its checksum (size %d, want %d): %w",
				c.ID, name, got.Size, want.Size, errdefs.ErrDataLoss)
		}
		return nil
	})
	if cerr := ctx.Err(); cerr != nil {
		return cerr // whatever a worker saw, the verification did not finish
	}
	return err
}
