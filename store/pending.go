package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PendingFile in a staging directory holds the record of a checkpoint
// whose images are complete but which is published only later: an
// incoming migration restores straight from staging and publishes after
// the target runs. A start that finds it seals the checkpoint instead of
// discarding it, so a crash in between loses nothing.
const PendingFile = "pending.json"

// MarkPending records c in its staging directory as complete.
func (s *Store) MarkPending(ctx context.Context, c *Checkpoint) error {
	if !validID(c.ID) {
		return fmt.Errorf("mark pending %q: %w", c.ID, fs.ErrInvalid)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.layout.Staging(c.ID), PendingFile), data); err != nil {
		return fmt.Errorf("mark %s pending: %w", c.ID, err)
	}
	return nil
}

// recoverStaging discards unfinished checkpoints in staging and seals the
// pending ones.
func (s *Store) recoverStaging(ctx context.Context) error {
	entries, err := os.ReadDir(s.layout.StagingDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".whole"); ok {
			// WholeFromChain's copy: the swap was cut between its renames
			// (the checkpoint is here now), or the copy was (it starts
			// again from the chain).
			if _, err := os.Stat(s.layout.Staging(base)); !errors.Is(err, fs.ErrNotExist) {
				if err := os.RemoveAll(s.layout.Staging(name)); err != nil {
					return err
				}
				continue
			}
			if err := os.Rename(s.layout.Staging(name), s.layout.Staging(base)); err != nil {
				return err
			}
			name = base
		}
		if err := s.recoverStaged(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// recoverStaged seals the staged checkpoint name if it is pending, and
// removes it otherwise.
func (s *Store) recoverStaged(ctx context.Context, name string) error {
	dir := s.layout.Staging(name)
	data, err := os.ReadFile(filepath.Join(dir, PendingFile))
	if err == nil {
		if err = s.WholeFromChain(ctx, name); err == nil {
			data, err = os.ReadFile(filepath.Join(dir, PendingFile))
		}
		if err == nil {
			err = s.sealPending(ctx, name, data)
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return err
		case validID(name):
			s.log.Error("sealing a pending checkpoint failed; moved to quarantine", "dir", dir, "err", err)
			if _, serr := os.Stat(dir); serr != nil {
				return nil // it reached checkpoints/, where the rebuild of the index readmits it
			}
			return s.quarantineFrom(dir, name, "sealing a pending checkpoint failed: "+err.Error())
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.log.Warn("removing unfinished checkpoint in staging", "path", dir)
	return os.RemoveAll(dir)
}

// sealPending publishes a pending checkpoint found at start: hashed and
// synced as Publish does, then indexed as a readmitted checkpoint is
// (its name may have been taken meanwhile).
func (s *Store) sealPending(ctx context.Context, id string, data []byte) error {
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%s: %w", PendingFile, err)
	}
	if err := validRecord(&c, id); err != nil {
		return fmt.Errorf("%s: %w", PendingFile, err)
	}
	staging := s.layout.Staging(id)
	sums, err := sumDir(ctx, staging, nil)
	if err != nil {
		return err
	}
	c.FormatVersion, c.Files = FormatVersion, sums
	c.State, c.Sealed = StateSealed, time.Now().UTC()
	if err := writeMetadata(staging, &c); err != nil {
		return err
	}
	if err := os.Rename(staging, s.layout.Checkpoint(id)); err != nil {
		return err
	}
	if err := syncDir(s.layout.CheckpointsDir()); err != nil {
		return err
	}
	if err := s.admit(&c); err != nil {
		return err
	}
	s.log.Warn("sealed a pending checkpoint left by an interrupted incoming migration", "id", id, "name", c.Name)
	return removePending(s.layout.Checkpoint(id))
}

func removePending(dir string) error {
	if err := os.Remove(filepath.Join(dir, PendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
