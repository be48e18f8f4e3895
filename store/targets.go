package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// Target is a process tree ckptd knows: one it launched, restored, or
// checkpointed. RestoredFrom links a restored copy to its checkpoint, which
// is how lineage continues across restores.
type Target struct {
	TargetRef
	// StartTime is the root's start time in clock ticks since boot
	// (/proc/PID/stat field 22): with the PID it tells a live target from
	// a reused PID.
	StartTime    uint64    `json:"start_time"`
	RestoredFrom string    `json:"restored_from,omitempty"`
	Created      time.Time `json:"created"`
	// InDoubt says why a migrated tree is kept stopped: the source never
	// confirmed its own copy gone. ckptctl migrate --resolve settles it.
	InDoubt string `json:"in_doubt,omitempty"`
}

// PutTarget records or replaces a target.
func (s *Store) PutTarget(ctx context.Context, t *Target) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).Put([]byte(t.Key()), v)
	})
}

// GetTarget returns the target with this key, or NotFound.
func (s *Store) GetTarget(ctx context.Context, key string) (*Target, error) {
	var t *Target
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTargets).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("target %s: %w", key, errdefs.ErrNotFound)
		}
		t = &Target{}
		return json.Unmarshal(v, t)
	})
	return t, err
}

// ListTargets returns every known target, oldest first.
func (s *Store) ListTargets(ctx context.Context) ([]*Target, error) {
	var out []*Target
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).ForEach(func(_, v []byte) error {
			t := &Target{}
			if err := json.Unmarshal(v, t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}
