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

// foldSurvivors folds the checkpoints of ids that go into every checkpoint
// that stays and reads pages from them, in one rewrite each however many
// of its ancestors go. A survivor in use is left alone: the caller then
// keeps what it reads from.
func (s *Store) foldSurvivors(ctx context.Context, ids []string) error {
	removing := map[string]bool{}
	for _, id := range ids {
		removing[id] = true
	}
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range all {
		if !removing[k.ID] && k.Incremental != nil && removing[k.Incremental.Parent] {
			errs = append(errs, s.fold(ctx, k.ID, removing))
		}
	}
	return errors.Join(errs...)
}

// fold rewrites checkpoint id so that it reads no pages from the
// checkpoints removing names: it takes them in, and its parent becomes its
// nearest ancestor that stays.
func (s *Store) fold(ctx context.Context, id string, removing map[string]bool) error {
	done, err := s.holdForRewrite(id)
	if err != nil {
		return err
	}
	defer done()
	k, err := s.Get(ctx, id)
	if err != nil || k.Incremental == nil || !removing[k.Incremental.Parent] {
		return err // changed meanwhile: nothing to fold
	}
	// Its chain stays while it is read, and rm keeps off it.
	_, release, err := s.AcquireSealed(ctx, k.Incremental.Parent)
	if err != nil {
		return err
	}
	defer release()
	anc, err := s.Ancestors(ctx, k)
	if err != nil {
		return err
	}
	absorb := 0
	for absorb < len(anc) && removing[anc[absorb].ID] {
		absorb++
	}
	parent := anc[absorb-1].Parent // the lineage goes on past the chain's end
	for parent != "" && removing[parent] {
		p, err := s.Get(ctx, parent)
		if err != nil {
			return err
		}
		parent = p.Parent
	}
	out := s.layout.Staging(NewID()) // a start removes it if this does not finish
	nk, err := s.rewriteOver(ctx, k, absorb, parent, out)
	if err != nil {
		return errors.Join(fmt.Errorf("fold %d removed ancestors into %s: %w", absorb, k.ID, err), os.RemoveAll(out))
	}
	if err := s.exchange(k.ID, nk, out); err != nil {
		return fmt.Errorf("fold %d removed ancestors into %s: %w", absorb, k.ID, err)
	}
	s.log.Info("folded removed ancestors' pages into a checkpoint", "checkpoint", k.ID, "ancestors", absorb,
		"parent", parent, "shared_pages", nk.SharedBytes()/4096, "bytes", nk.Size())
	return os.RemoveAll(out) // now the old directory
}

// rewriteOver writes into out k's images with the pages of its nearest
// absorb ancestors copied in, and returns their record: k's, with parent
// as its parent (the ancestor it still reads from, if any).
func (s *Store) rewriteOver(ctx context.Context, k *Checkpoint, absorb int, parent, out string) (*Checkpoint, error) {
	written, needsParent, err := chain.Rewrite(ctx, s.layout.Checkpoint(k.ID), out, absorb, MetadataFile)
	if err != nil {
		return nil, err
	}
	nk := *k
	nk.Parent, nk.Incremental = parent, nil
	if needsParent {
		if parent == "" {
			return nil, fmt.Errorf("its pages go beyond its chain")
		}
		if err := chain.Link(out, s.layout.Checkpoint(parent)); err != nil {
			return nil, err
		}
		n, err := chain.ParentPages(out)
		if err != nil {
			return nil, err
		}
		nk.Incremental = &Incremental{Parent: parent, SharedPages: n}
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
