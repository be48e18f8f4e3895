package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// recover brings the store back to a consistent state after a crash or a
// lost index. It never deletes a checkpoint: only an unfinished one in
// staging (a pending one is sealed), the members of a group that never
// got its record, and what rm had already taken out of the index. Proven damage
// goes to quarantine; anything else it cannot judge (a cancelled start, a
// newer format, an I/O error) is left in place and reported. Every action
// is logged.
func (s *Store) recover(ctx context.Context) error {
	if err := s.recoverFolds(); err != nil { // before staging, which holds their directories
		return err
	}
	if err := s.recoverStaging(ctx); err != nil {
		return err
	}
	if err := s.removeLeftovers(s.layout.TrashDir(), "removed checkpoint"); err != nil {
		return err
	}
	// Work dirs hold images only while their work runs (a migration's sent
	// images, a pre-flight's cpuinfo.img); after a crash only logs stay
	// (bounded, see WorkDir).
	var stale []string
	for _, pattern := range []string{filepath.Join(s.layout.DumpsDir(), "*", "images"),
		filepath.Join(s.layout.DumpsDir(), "*", "*.img"), filepath.Join(s.layout.DumpsDir(), "*", "rounds"),
		filepath.Join(s.layout.RestoresDir(), "*", "*.img")} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			return err
		}
		stale = append(stale, m...)
	}
	for _, p := range stale {
		s.log.Warn("removing images an interrupted operation left in its work dir", "path", p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	// Before anything resumes sealing them, which would hold them.
	if err := s.dropIncompleteGroups(ctx); err != nil {
		return err
	}
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return err
	}
	indexed := make(map[string]bool, len(all))
	for _, c := range all {
		indexed[c.ID] = true
		if err := s.recheck(c); err != nil {
			return err
		}
	}
	if err := s.rebuildIndex(ctx, indexed); err != nil {
		return err
	}
	return s.syncTargets()
}

// recheck looks at one indexed checkpoint without reading its files, so
// that a start costs the same whatever the store holds: integrity is
// checked by every restore, by verify, and by the scrub.
func (s *Store) recheck(c *Checkpoint) error {
	dir := s.layout.Checkpoint(c.ID)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		s.log.Warn("dropping checkpoint from index: its directory is missing", "id", c.ID, "name", c.Name, "dir", dir)
		return s.unindex(c)
	}
	if !c.IsSealing() {
		return nil
	}
	quarantined, err := s.resumeSealing(c)
	if err != nil || !quarantined {
		return err
	}
	return s.unindex(c)
}

// rebuildIndex readmits checkpoint directories the index does not list:
// an index that was lost or damaged, a publish whose index commit never
// happened, a quarantined checkpoint moved back by hand. Each is verified
// first, oldest first so that parents come before children.
func (s *Store) rebuildIndex(ctx context.Context, indexed map[string]bool) error {
	entries, err := os.ReadDir(s.layout.CheckpointsDir())
	if err != nil {
		return err
	}
	var found []*Checkpoint
	for _, e := range entries {
		id := e.Name()
		if indexed[id] {
			continue
		}
		if !e.IsDir() || !validID(id) {
			s.log.Warn("unknown entry in checkpoints directory; left as it is", "path", filepath.Join(s.layout.CheckpointsDir(), id))
			continue
		}
		c, err := readMetadata(s.layout.Checkpoint(id))
		if err == nil {
			err = validRecord(c, id)
		}
		if err != nil {
			reason := fmt.Sprintf("unindexed checkpoint without a readable record: %v", err)
			s.log.Error("checkpoint moved to quarantine", "id", id, "err", reason)
			if err := s.quarantine(id, reason); err != nil {
				return err
			}
			continue
		}
		found = append(found, c)
	}
	sortByCreated(found)
	if len(found) > 0 {
		s.log.Info("verifying unindexed checkpoints", "count", len(found))
	}
	for _, c := range found {
		if err := s.readmitFound(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) readmitFound(ctx context.Context, c *Checkpoint) error {
	if c.IsSealing() {
		// Committed in the freeze, but its index entry was lost: sealed
		// now if this boot wrote it, quarantined if not.
		if c.BootID == s.bootID {
			if err := s.admit(c); err != nil {
				return err
			}
		}
		_, err := s.resumeSealing(c)
		return err
	}
	if passed, err := s.judge(ctx, c, "unindexed checkpoint"); err != nil || !passed {
		return err
	}
	if err := s.admit(c); err != nil {
		return err
	}
	s.log.Warn("readmitted unindexed checkpoint after verifying it", "id", c.ID, "name", c.Name)
	return nil
}

// judge verifies c and acts on the verdict: proven damage goes to
// quarantine, a cancelled start is an error, and any other failure leaves
// c where it is, logged.
func (s *Store) judge(ctx context.Context, c *Checkpoint, what string) (passed bool, err error) {
	err = s.Verify(ctx, c)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("verify %s: %w", c.ID, ctx.Err())
	case errdefs.IsDataLoss(err):
		s.log.Error(what+" failed verification; moved to quarantine", "id", c.ID, "name", c.Name,
			"err", err, "quarantine", s.layout.Quarantine(c.ID))
		return false, s.quarantine(c.ID, err.Error())
	}
	s.log.Warn(what+" could not be verified; left as it is", "id", c.ID, "name", c.Name, "err", err)
	return false, nil
}

func (s *Store) removeLeftovers(dir, what string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		s.log.Warn("removing "+what, "path", p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) unindex(c *Checkpoint) error {
	return s.db.Update(func(tx *bolt.Tx) error { return unindexTx(tx, c) })
}
