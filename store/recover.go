package store

import (
	"context"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// recover brings the store back to a consistent state after a crash. It
// never deletes a checkpoint silently: every action is logged.
func (s *Store) recover(ctx context.Context) error {
	if err := s.removeLeftovers(s.layout.StagingDir(), nil, "unfinished checkpoint in staging"); err != nil {
		return err
	}
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return err
	}
	indexed := make(map[string]bool, len(all))
	for _, c := range all {
		dir := s.layout.Checkpoint(c.ID)
		if _, err := os.Stat(dir); err != nil {
			s.log.Warn("dropping checkpoint from index: its directory is missing", "id", c.ID, "name", c.Name, "dir", dir)
			if err := s.unindex(c); err != nil {
				return err
			}
			continue
		}
		if err := s.Verify(ctx, c); err != nil {
			q := filepath.Join(s.layout.QuarantineDir(), c.ID)
			s.log.Error("checkpoint failed verification; moved to quarantine", "id", c.ID, "name", c.Name, "err", err, "quarantine", q)
			if err := os.Rename(dir, q); err != nil {
				return err
			}
			if err := s.unindex(c); err != nil {
				return err
			}
			continue
		}
		indexed[c.ID] = true
	}
	// A directory renamed into place whose index commit never happened was
	// not visible and its dump was rolled back: it is a leftover too.
	return s.removeLeftovers(s.layout.CheckpointsDir(), indexed, "unindexed checkpoint directory")
}

func (s *Store) removeLeftovers(dir string, keep map[string]bool, what string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		p := filepath.Join(dir, e.Name())
		s.log.Warn("removing "+what, "path", p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) unindex(c *Checkpoint) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketCheckpoints).Delete([]byte(c.ID)); err != nil {
			return err
		}
		names := tx.Bucket(bucketNames)
		if string(names.Get([]byte(c.Name))) == c.ID {
			return names.Delete([]byte(c.Name))
		}
		return nil
	})
}
