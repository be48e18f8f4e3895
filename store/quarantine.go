package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// Quarantined is a checkpoint held out of the index because its files are
// damaged or its record cannot be read. It stays on disk, visible, until
// it is readmitted or removed with rm: ckptd never deletes it by itself.
type Quarantined struct {
	ID         string      `json:"id"`
	Reason     string      `json:"reason"`
	Since      time.Time   `json:"since"`
	Checkpoint *Checkpoint `json:"-"` // nil when its checkpoint.json is unreadable
}

// quarantine moves a checkpoint directory out of the index's view and
// notes why. The caller unindexes it.
func (s *Store) quarantine(id, reason string) error {
	return s.quarantineFrom(s.layout.Checkpoint(id), id, reason)
}

func (s *Store) quarantineFrom(dir, id, reason string) error {
	q := s.layout.Quarantine(id)
	if err := os.Rename(dir, q); err != nil {
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	if err := syncDir(s.layout.QuarantineDir()); err != nil {
		return err
	}
	return writeNote(q, reason)
}

func writeNote(dir, reason string) error {
	data, err := json.Marshal(Quarantined{ID: filepath.Base(dir), Reason: reason, Since: time.Now().UTC()})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, QuarantineNote), append(data, '\n'))
}

// ListQuarantined returns the quarantined checkpoints, oldest first.
func (s *Store) ListQuarantined(ctx context.Context) ([]Quarantined, error) {
	entries, err := os.ReadDir(s.layout.QuarantineDir())
	if err != nil {
		return nil, err
	}
	var out []Quarantined
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, s.readQuarantined(e.Name()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// readQuarantined reads what is known of one quarantined directory; a
// directory put there by hand has no note and is described as such.
func (s *Store) readQuarantined(id string) Quarantined {
	dir := s.layout.Quarantine(id)
	q := Quarantined{ID: id, Reason: "no quarantine note (placed here by hand?)"}
	if data, err := os.ReadFile(filepath.Join(dir, QuarantineNote)); err == nil {
		if err := json.Unmarshal(data, &q); err != nil {
			q.Reason = "unreadable quarantine note: " + err.Error()
		}
		q.ID = id
	} else if st, err := os.Stat(dir); err == nil {
		q.Since = st.ModTime().UTC()
	}
	if c, err := readMetadata(dir); err == nil && validRecord(c, id) == nil {
		q.Checkpoint = c
	}
	return q
}

// findQuarantined resolves a reference among quarantined checkpoints: id,
// unique id prefix, or name.
func (s *Store) findQuarantined(ctx context.Context, ref string) (Quarantined, error) {
	all, err := s.ListQuarantined(ctx)
	if err != nil {
		return Quarantined{}, err
	}
	var found []Quarantined
	for _, q := range all {
		switch {
		case q.ID == ref || (q.Checkpoint != nil && q.Checkpoint.Name == ref):
			return q, nil
		case strings.HasPrefix(q.ID, ref):
			found = append(found, q)
		}
	}
	switch len(found) {
	case 0:
		return Quarantined{}, fmt.Errorf("checkpoint %q: %w", ref, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Quarantined{}, fmt.Errorf("quarantined checkpoint %q is ambiguous, give more of its id: %w", ref, errdefs.ErrInvalidArgument)
}

// VerifyResult is what Check found.
type VerifyResult struct {
	Checkpoint  *Checkpoint
	Quarantined bool  // it was in quarantine when checked
	Readmitted  bool  // it passed and is back in the index
	Problem     error // what failed; nil when every file matched
}

// Check verifies a checkpoint, indexed or quarantined. A quarantined one
// that passes goes back into the index when readmit is set; one that
// fails keeps (or gets, if it was indexed) nothing but a report: Check
// never moves an indexed checkpoint.
func (s *Store) Check(ctx context.Context, ref string, readmit bool) (*VerifyResult, error) {
	c, release, err := s.AcquireSealed(ctx, ref)
	if err == nil {
		defer release()
		if readmit {
			return nil, fmt.Errorf("checkpoint %s is not quarantined: %w", c.Name, errdefs.ErrFailedPrecondition)
		}
		return &VerifyResult{Checkpoint: c, Problem: s.Verify(ctx, c)}, ctx.Err()
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	q, err := s.findQuarantined(ctx, ref)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Checkpoint: q.Checkpoint, Quarantined: true}
	if q.Checkpoint == nil {
		res.Problem = fmt.Errorf("checkpoint %s: %s is unreadable: %w", q.ID, MetadataFile, errdefs.ErrDataLoss)
		return res, nil
	}
	res.Problem = verifyDir(ctx, s.layout.Quarantine(q.ID), q.Checkpoint)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Problem != nil || !readmit {
		return res, nil
	}
	if err := s.readmit(ctx, q.ID, q.Checkpoint); err != nil {
		return nil, err
	}
	res.Readmitted = true
	return res, nil
}

// readmit moves a verified quarantined checkpoint back and indexes it. A
// crash between the two leaves an unindexed directory with its record,
// which the next start readmits.
func (s *Store) readmit(ctx context.Context, id string, c *Checkpoint) error {
	if err := os.Rename(s.layout.Quarantine(id), s.layout.Checkpoint(id)); err != nil {
		return fmt.Errorf("readmit %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(s.layout.Checkpoint(id), QuarantineNote)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("readmit %s: %w", id, err)
	}
	return s.admit(c)
}

// admit indexes a verified checkpoint found on disk. Its name goes to it
// unless another checkpoint has it; then it is indexed as NAME-<id prefix>
// and its record says so. A parent that is gone is kept in the record:
// lineage shows it as missing.
func (s *Store) admit(c *Checkpoint) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		names := tx.Bucket(bucketNames)
		if names.Get([]byte(c.Name)) != nil {
			old := c.Name
			c.Name = fmt.Sprintf("%.55s-%s", old, c.ID[:8])
			s.log.Warn("readmitted checkpoint's name is taken; renamed", "id", c.ID, "name", old, "new_name", c.Name)
			if names.Get([]byte(c.Name)) != nil {
				return fmt.Errorf("readmit %s: names %q and %q are taken: %w", c.ID, old, c.Name, errdefs.ErrAlreadyExists)
			}
			if err := writeMetadata(s.layout.Checkpoint(c.ID), c); err != nil {
				return fmt.Errorf("readmit %s: %w", c.ID, err)
			}
		}
		if err := names.Put([]byte(c.Name), []byte(c.ID)); err != nil {
			return err
		}
		return putTx(tx, c)
	})
}

func readMetadata(dir string) (*Checkpoint, error) {
	data, err := os.ReadFile(filepath.Join(dir, MetadataFile))
	if err != nil {
		return nil, err
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", MetadataFile, err)
	}
	return &c, nil
}
