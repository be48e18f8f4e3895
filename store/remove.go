package store

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// Children returns the checkpoints whose parent is id.
func (s *Store) Children(ctx context.Context, id string) ([]*Checkpoint, error) {
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return nil, err
	}
	var out []*Checkpoint
	for _, c := range all {
		if c.Parent == id {
			out = append(out, c)
		}
	}
	return out, nil
}

// Remove deletes checkpoints by reference. A checkpoint others descend from
// is refused unless recursive, which removes its descendants too. Nothing
// is removed unless every reference resolves. It returns the removed ids.
func (s *Store) Remove(ctx context.Context, refs []string, recursive bool) ([]string, error) {
	var removed []*Checkpoint
	err := s.db.Update(func(tx *bolt.Tx) error {
		children, err := childIndex(tx)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		var order []string
		for _, ref := range refs {
			c, err := getTx(tx, ref)
			if err != nil {
				return err
			}
			kids := children[c.ID]
			if len(kids) > 0 && !recursive {
				return fmt.Errorf("checkpoint %s (%s) has descendants %s; use --recursive to remove them too: %w",
					c.Name, c.ID, strings.Join(kids, ", "), errdefs.ErrFailedPrecondition)
			}
			collect(c.ID, children, seen, &order)
		}
		for _, id := range order {
			c, err := decode(tx.Bucket(bucketCheckpoints).Get([]byte(id)))
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketCheckpoints).Delete([]byte(id)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketNames).Delete([]byte(c.Name)); err != nil {
				return err
			}
			removed = append(removed, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The index no longer lists them; a crash before the directories go is
	// cleaned up at the next start.
	ids := make([]string, 0, len(removed))
	for _, c := range removed {
		if err := os.RemoveAll(s.layout.Checkpoint(c.ID)); err != nil {
			return ids, fmt.Errorf("remove %s: %w", c.ID, err)
		}
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// childIndex maps a checkpoint id to the ids of its direct children.
func childIndex(tx *bolt.Tx) (map[string][]string, error) {
	children := map[string][]string{}
	err := tx.Bucket(bucketCheckpoints).ForEach(func(_, v []byte) error {
		c, err := decode(v)
		if err != nil {
			return err
		}
		if c.Parent != "" {
			children[c.Parent] = append(children[c.Parent], c.ID)
		}
		return nil
	})
	for _, kids := range children {
		sort.Strings(kids)
	}
	return children, err
}

// collect appends id and all its descendants, children first.
func collect(id string, children map[string][]string, seen map[string]bool, order *[]string) {
	if seen[id] {
		return
	}
	seen[id] = true
	for _, k := range children[id] {
		collect(k, children, seen, order)
	}
	*order = append(*order, id)
}
