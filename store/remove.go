package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
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

// Remove deletes checkpoints by reference, indexed or quarantined. A
// checkpoint others descend from is refused unless recursive, which removes
// its descendants too; one that a reader holds (Acquire), itself or as a
// descendant, is refused. Nothing is removed unless every reference
// resolves. It returns the removed ids.
func (s *Store) Remove(ctx context.Context, refs []string, recursive bool) ([]string, error) {
	var quarantined, inIndex []string
	var indexed []*Checkpoint
	for _, ref := range refs {
		if _, err := s.Get(ctx, ref); !errdefs.IsNotFound(err) {
			inIndex = append(inIndex, ref) // or a bad ref: refused in the transaction below
			continue
		}
		q, err := s.findQuarantined(ctx, ref)
		if err != nil {
			return nil, err
		}
		quarantined = append(quarantined, q.ID)
	}
	if len(inIndex) > 0 {
		var err error
		if indexed, err = s.unindexTree(ctx, inIndex, recursive); err != nil {
			return nil, err
		}
	}
	// The index no longer lists them and their directories are in the
	// trash, which the next start empties if this does not finish.
	var ids []string
	for _, c := range indexed {
		if err := os.RemoveAll(s.layout.Trash(c.ID)); err != nil {
			return ids, fmt.Errorf("remove %s: %w", c.ID, err)
		}
		ids = append(ids, c.ID)
	}
	for _, id := range quarantined {
		if err := os.RemoveAll(s.layout.Quarantine(id)); err != nil {
			return ids, fmt.Errorf("remove quarantined %s: %w", id, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// unindexTree takes the indexed checkpoints refs name (and with recursive
// their descendants) out of the index and moves their directories to the
// trash, both or neither.
func (s *Store) unindexTree(ctx context.Context, refs []string, recursive bool) ([]*Checkpoint, error) {
	s.mu.Lock() // against Acquire: a checkpoint is either held or removed
	defer s.mu.Unlock()
	var removed []*Checkpoint
	var moved []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		order, err := s.removalOrder(tx, refs, recursive)
		if err != nil {
			return err
		}
		for _, id := range order {
			c, err := decode(tx.Bucket(bucketCheckpoints).Get([]byte(id)))
			if err != nil {
				return err
			}
			if err := os.Rename(s.layout.Checkpoint(id), s.layout.Trash(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", id, err)
			}
			moved = append(moved, id)
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
		for _, id := range moved {
			if rerr := os.Rename(s.layout.Trash(id), s.layout.Checkpoint(id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("put back %s: %w", id, rerr))
			}
		}
		return nil, err
	}
	return removed, nil
}

// removalOrder resolves indexed refs and lists what removing them takes,
// children first, refusing what is held or has descendants.
func (s *Store) removalOrder(tx *bolt.Tx, refs []string, recursive bool) ([]string, error) {
	children, err := childIndex(tx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var order []string
	for _, ref := range refs {
		c, err := getTx(tx, ref)
		if err != nil {
			return nil, err
		}
		kids := children[c.ID]
		if len(kids) > 0 && !recursive {
			return nil, fmt.Errorf("checkpoint %s (%s) has descendants %s; use --recursive to remove them too, or --relink to keep them: %w",
				c.Name, c.ID, strings.Join(kids, ", "), errdefs.ErrFailedPrecondition)
		}
		collect(c.ID, children, seen, &order)
	}
	for _, id := range order {
		if s.busy[id] > 0 {
			return nil, fmt.Errorf("checkpoint %s is in use (a restore, an inspect, its seal, or a new checkpoint of its target): %w", id, errdefs.ErrFailedPrecondition)
		}
	}
	return order, nil
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

// Prune removes checkpoints as a retention policy decides, unlike Remove
// without refusing parents: each removed checkpoint's children take its
// parent as theirs, so lineage skips it. A checkpoint that is held, or
// whose child is (a seal or restore reads it), is left for the next time.
// It returns the removed ids.
func (s *Store) Prune(ctx context.Context, ids []string) ([]string, error) {
	// A checkpoint that stays but reads pages from one that goes gets them
	// first; where that fails, what it reads from stays (readsFrom, below)
	// for the next prune.
	if err := s.foldSurvivors(ctx, ids); err != nil {
		s.log.Warn("keeping checkpoints a child could not take its pages from", "err", err)
	}
	s.mu.Lock() // against Acquire: a checkpoint is either held or removed
	defer s.mu.Unlock()
	var removed []string
	relinked := map[string]*Checkpoint{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		children, err := childIndex(tx)
		if err != nil {
			return err
		}
		// Newest first: a removed checkpoint's children are gone or kept
		// by the time it is looked at.
		order, err := newestFirst(tx, ids)
		if err != nil {
			return err
		}
		for _, id := range order {
			if s.busy[id] > 0 || slices.ContainsFunc(children[id], func(k string) bool { return s.busy[k] > 0 }) {
				continue
			}
			c, err := getTx(tx, id)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if dependent, err := readsFrom(tx, children[id], id); err != nil || dependent {
				if err != nil {
					return err
				}
				continue
			}
			if err := s.relink(tx, children[id], c.Parent, relinked); err != nil {
				return err
			}
			children[c.Parent] = append(children[c.Parent], children[id]...)
			// Into the trash with the index commit, or back if it fails.
			if err := os.Rename(s.layout.Checkpoint(id), s.layout.Trash(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed = append(removed, id)
			delete(relinked, id)
			if err := unindexTx(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, id := range removed {
			if rerr := os.Rename(s.layout.Trash(id), s.layout.Checkpoint(id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("put back %s: %w", id, rerr))
			}
		}
		return nil, fmt.Errorf("prune: %w", err)
	}
	var errs []error
	for _, k := range relinked {
		errs = append(errs, writeMetadata(s.layout.Checkpoint(k.ID), k))
	}
	for _, id := range removed {
		errs = append(errs, os.RemoveAll(s.layout.Trash(id)))
	}
	return removed, errors.Join(errs...)
}

// newestFirst orders the indexed ones of ids newest first (a child is
// always newer than its parent).
func newestFirst(tx *bolt.Tx, ids []string) ([]string, error) {
	var cs []*Checkpoint
	for _, id := range ids {
		c, err := getTx(tx, id)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Created.After(cs[j].Created) })
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out, nil
}

// readsFrom reports whether one of kids still in the index reads pages
// from id.
func readsFrom(tx *bolt.Tx, kids []string, id string) (bool, error) {
	for _, k := range kids {
		v := tx.Bucket(bucketCheckpoints).Get([]byte(k))
		if v == nil {
			continue // removed by this prune
		}
		c, err := decode(v)
		if err != nil {
			return false, err
		}
		if c.Incremental != nil && c.Incremental.Parent == id {
			return true, nil
		}
	}
	return false, nil
}

// RemoveRelinking removes the checkpoints refs name, keeping their
// descendants: a child takes the pages it reads from a removed checkpoint
// and the removed one's parent becomes its parent (see Prune). It returns
// the removed ids; one in use, or whose child is, stays and is an error.
func (s *Store) RemoveRelinking(ctx context.Context, refs []string) ([]string, error) {
	ids := make([]string, 0, len(refs))
	for _, ref := range refs {
		c, err := s.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		ids = append(ids, c.ID)
	}
	removed, err := s.Prune(ctx, ids)
	if err != nil {
		return removed, err
	}
	for _, id := range ids {
		if !slices.Contains(removed, id) {
			return removed, fmt.Errorf("checkpoint %s is in use, or a child of it is (restore, export, seal): not removed: %w", id, errdefs.ErrFailedPrecondition)
		}
	}
	return removed, nil
}

// relink makes parent the parent of each of kids in the index, and notes
// their records for their checkpoint.json.
func (s *Store) relink(tx *bolt.Tx, kids []string, parent string, relinked map[string]*Checkpoint) error {
	for _, k := range kids {
		v := tx.Bucket(bucketCheckpoints).Get([]byte(k))
		if v == nil {
			continue // removed by this prune
		}
		c, err := decode(v)
		if err != nil {
			return err
		}
		c.Parent = parent
		if err := putTx(tx, c); err != nil {
			return err
		}
		relinked[k] = c
	}
	return nil
}

func unindexTx(tx *bolt.Tx, c *Checkpoint) error {
	if err := tx.Bucket(bucketCheckpoints).Delete([]byte(c.ID)); err != nil {
		return err
	}
	names := tx.Bucket(bucketNames)
	if string(names.Get([]byte(c.Name))) == c.ID {
		return names.Delete([]byte(c.Name))
	}
	return nil
}
