package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/ckptd/ckptd/errdefs"
)

// Verify checks every file listed in c against its size and SHA-256.
// A mismatch or a missing file is ErrDataLoss and names the file.
func (s *Store) Verify(ctx context.Context, c *Checkpoint) error {
	if c.FormatVersion != FormatVersion {
		return fmt.Errorf("checkpoint %s has format_version %d, this ckptd reads %d: %w",
			c.ID, c.FormatVersion, FormatVersion, errdefs.ErrFailedPrecondition)
	}
	dir := s.layout.Checkpoint(c.ID)
	names := make([]string, 0, len(c.Files))
	for n := range c.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	return forEachParallel(names, func(name string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := c.Files[name]
		got, err := sumFile(filepath.Join(dir, name), false)
		if err != nil {
			return fmt.Errorf("checkpoint %s: %s: %v: %w", c.ID, name, err, errdefs.ErrDataLoss)
		}
		if got != want {
			return fmt.Errorf("checkpoint %s: %s does not match its checksum (size %d, want %d): %w",
				c.ID, name, got.Size, want.Size, errdefs.ErrDataLoss)
		}
		return nil
	})
}
