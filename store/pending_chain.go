package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckptd/ckptd/chain"
)

// PendingChainFile in a staging directory names, relative to the state
// root, the image directory whose chain holds the pending checkpoint's
// images: a pre-copy migration restores from its chain of rounds, and
// the checkpoint is made whole from it (WholeFromChain), after the
// restore or at the next start.
const PendingChainFile = "pending-chain"

// MarkPendingChain records c as complete, its images being the chain
// ending in dir (under the state root's dumps).
func (s *Store) MarkPendingChain(ctx context.Context, c *Checkpoint, dir string) error {
	rel, err := filepath.Rel(s.layout.Root, dir)
	if err != nil || !strings.HasPrefix(rel, "dumps"+string(filepath.Separator)) {
		return fmt.Errorf("mark %s pending: its chain %s is not under %s", c.ID, dir, s.layout.DumpsDir())
	}
	if err := writeFileAtomic(filepath.Join(s.layout.Staging(c.ID), PendingChainFile), []byte(rel)); err != nil {
		return fmt.Errorf("mark %s pending: %w", c.ID, err)
	}
	return s.MarkPending(ctx, c)
}

// WholeFromChain makes the staged checkpoint id whole from the chain its
// PendingChainFile names: a self-contained copy (unchanged files hard
// linked) takes the staging directory's place, with its pending record.
// Without that file there is nothing to do.
func (s *Store) WholeFromChain(ctx context.Context, id string) error {
	staging := s.layout.Staging(id)
	rel, err := os.ReadFile(filepath.Join(staging, PendingChainFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	from := filepath.Join(s.layout.Root, filepath.Clean(string(rel)))
	if !strings.HasPrefix(from, s.layout.DumpsDir()+string(filepath.Separator)) {
		return fmt.Errorf("%s of %s names %s, outside %s", PendingChainFile, id, from, s.layout.DumpsDir())
	}
	whole := staging + ".whole"
	os.RemoveAll(whole) // a crash's half copy
	if _, _, err := chain.Rewrite(ctx, from, whole, -1); err != nil {
		return fmt.Errorf("make %s whole from its chain: %w", id, err)
	}
	if err := os.Rename(filepath.Join(staging, PendingFile), filepath.Join(whole, PendingFile)); err != nil {
		os.RemoveAll(whole)
		return err
	}
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := os.Rename(whole, staging); err != nil {
		return err
	}
	return syncDir(s.layout.StagingDir())
}
