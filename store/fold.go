package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/chain"
	"github.com/ckptd/ckptd/errdefs"
)

// Folding: before a checkpoint in the middle of a chain is removed, each
// child that reads pages from it gets them copied in, so that it reads
// only from the removed one's parent on. The child's new directory is
// built in staging (hard links and the rewritten page images), then
// exchanged with its directory in one rename, then indexed. A marker in
// the index, written before the exchange and removed with the new
// record, tells a start interrupted in between to index the record the
// directory holds.

var bucketFolds = []byte("folds") // child id -> staging dir of the fold

// foldChildren folds id into every child that reads pages from it. A
// child in use is left alone: the caller then keeps id.
func (s *Store) foldChildren(ctx context.Context, id string) error {
	x, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	kids, err := s.Children(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range kids {
		if k.Incremental != nil && k.Incremental.Parent == id {
			errs = append(errs, s.fold(ctx, k.ID, x))
		}
	}
	return errors.Join(errs...)
}

// fold rewrites checkpoint id so that it no longer reads pages from its
// parent x.
func (s *Store) fold(ctx context.Context, id string, x *Checkpoint) error {
	done, err := s.holdForRewrite(id)
	if err != nil {
		return err
	}
	defer done()
	_, releaseX, err := s.AcquireSealed(ctx, x.ID) // x and its own chain stay while k reads them
	if err != nil {
		return err
	}
	defer releaseX()
	k, err := s.Get(ctx, id)
	if err != nil || k.Incremental == nil || k.Incremental.Parent != x.ID {
		return err // changed meanwhile: nothing to fold
	}
	out := s.layout.Staging(NewID()) // a start removes it if this does not finish
	nk, err := s.rewriteOver(ctx, k, x, out)
	if err != nil {
		return errors.Join(fmt.Errorf("fold %s into %s: %w", x.ID, k.ID, err), os.RemoveAll(out))
	}
	if err := s.exchange(k.ID, nk, out); err != nil {
		return fmt.Errorf("fold %s into %s: %w", x.ID, k.ID, err)
	}
	s.log.Info("folded a removed parent's pages into its child", "parent", x.ID, "child", k.ID,
		"shared_pages", nk.SharedBytes()/4096, "bytes", nk.Size())
	return os.RemoveAll(out) // now the old directory
}

// rewriteOver writes into out k's images with x's pages copied in, and
// returns their record: k's, over x's parent.
func (s *Store) rewriteOver(ctx context.Context, k, x *Checkpoint, out string) (*Checkpoint, error) {
	written, needsParent, err := chain.Rewrite(ctx, s.layout.Checkpoint(k.ID), out, 1, MetadataFile)
	if err != nil {
		return nil, err
	}
	nk := *k
	nk.Parent, nk.Incremental = x.Parent, nil
	if needsParent {
		if x.Incremental == nil {
			return nil, fmt.Errorf("its pages go beyond %s, which is stored whole", x.ID)
		}
		if err := chain.Link(out, s.layout.Checkpoint(x.Incremental.Parent)); err != nil {
			return nil, err
		}
		n, err := chain.ParentPages(out)
		if err != nil {
			return nil, err
		}
		nk.Incremental = &Incremental{Parent: x.Incremental.Parent, SharedPages: n}
	}
	if nk.Files, err = filesAfterRewrite(ctx, out, k, written); err != nil {
		return nil, err
	}
	return &nk, writeMetadata(out, &nk)
}

// filesAfterRewrite is the file list of a rewritten copy of c in dir:
// c's sums for the files linked, new ones for those written.
func filesAfterRewrite(ctx context.Context, dir string, c *Checkpoint, written []string) (map[string]FileSum, error) {
	sums, err := sumFiles(ctx, dir, written, hashOptions{format: c.FormatVersion, seal: true})
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		name := de.Name()
		if _, ok := sums[name]; ok || !de.Type().IsRegular() || name == MetadataFile {
			continue
		}
		sum, ok := c.Files[name]
		if !ok {
			return nil, fmt.Errorf("%s is not a file of checkpoint %s", name, c.ID)
		}
		sums[name] = sum
	}
	return sums, nil
}

// exchange swaps checkpoint id's directory with out, which holds its
// rewritten images and record nk, and indexes nk.
func (s *Store) exchange(id string, nk *Checkpoint, out string) error {
	mark := func(tx *bolt.Tx) error { return tx.Bucket(bucketFolds).Put([]byte(id), []byte(filepath.Base(out))) }
	if err := s.db.Update(mark); err != nil {
		return err
	}
	dir := s.layout.Checkpoint(id)
	if err := unix.Renameat2(unix.AT_FDCWD, out, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
		return errors.Join(fmt.Errorf("exchange %s: %w", dir, err), s.unmark(id))
	}
	err := syncDir(s.layout.CheckpointsDir())
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			if err := putTx(tx, nk); err != nil {
				return err
			}
			return tx.Bucket(bucketFolds).Delete([]byte(id))
		})
	}
	if err != nil { // put the old directory back: the index still describes it
		if back := unix.Renameat2(unix.AT_FDCWD, out, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); back != nil {
			return errors.Join(err, back) // the marker stays: the next start indexes the new record
		}
		return errors.Join(err, s.unmark(id))
	}
	return nil
}

func (s *Store) unmark(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFolds).Delete([]byte(id)) })
}

// holdForRewrite makes Acquire of id wait until done is called; it fails
// if id is held now.
func (s *Store) holdForRewrite(id string) (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[id] > 0 || s.rewriting[id] != nil {
		return nil, fmt.Errorf("checkpoint %s is in use: %w", id, errdefs.ErrFailedPrecondition)
	}
	ch := make(chan struct{})
	s.rewriting[id] = ch
	return func() {
		s.mu.Lock()
		delete(s.rewriting, id)
		s.mu.Unlock()
		close(ch)
	}, nil
}

// recoverFolds finishes folds a crash interrupted: where the exchange was
// done, the directory's record goes into the index; where it was not, the
// record there is the indexed one. The staging directories go with the
// rest of staging.
func (s *Store) recoverFolds() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFolds)
		ids := slices.Collect(maps.Keys(bucketMap(b)))
		for _, id := range ids {
			c, err := readMetadata(s.layout.Checkpoint(id))
			if err == nil {
				err = validRecord(c, id)
			}
			if err == nil {
				err = putTx(tx, c)
			}
			if err != nil {
				s.log.Error("an interrupted fold left a checkpoint the index may not describe", "id", id, "err", err)
			} else {
				s.log.Warn("finished a fold an interrupted ckptd left", "id", id)
			}
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

func bucketMap(b *bolt.Bucket) map[string]string {
	m := map[string]string{}
	b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
	return m
}
