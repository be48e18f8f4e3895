package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckptd/ckptd/chain"
	"github.com/ckptd/ckptd/errdefs"
)

// Incremental storage (package chain): a checkpoint whose record has
// Incremental set is deduplicated against its parent when it is sealed,
// before its files are hashed, so that its checksums cover what a restore
// reads from it. The images of its whole chain are then needed to restore
// it: holding it holds them, checking it checks them.

// dedup stores only what changed in c (staged or published in dir) since
// its parent; one that shares nothing is stored whole.
func (s *Store) dedup(ctx context.Context, c *Checkpoint, dir string) error {
	if c.Incremental == nil {
		return nil
	}
	n, err := chain.Dedup(ctx, dir, s.layout.Checkpoint(c.Incremental.Parent))
	if err != nil {
		return fmt.Errorf("store incrementally over %s: %w", c.Incremental.Parent, err)
	}
	if n == 0 {
		c.Incremental = nil
		return nil
	}
	c.Incremental.SharedPages = n
	return nil
}

// Ancestors returns the checkpoints c's images read pages from, nearest
// first; none for a checkpoint stored whole. A missing one is ErrDataLoss.
func (s *Store) Ancestors(ctx context.Context, c *Checkpoint) ([]*Checkpoint, error) {
	var out []*Checkpoint
	for cur := c; cur.Incremental != nil; {
		if len(out) >= chain.MaxDepth {
			return nil, fmt.Errorf("checkpoint %s: chain deeper than %d: %w", c.ID, chain.MaxDepth, errdefs.ErrDataLoss)
		}
		p, err := s.Get(ctx, cur.Incremental.Parent)
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("checkpoint %s reads pages from %s, which is no longer in the store (see ckptctl ls --quarantined): %w",
				c.Name, cur.Incremental.Parent, errdefs.ErrDataLoss)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		cur = p
	}
	return out, nil
}

// acquireChain holds c's ancestors, waiting for any still sealing.
func (s *Store) acquireChain(ctx context.Context, c *Checkpoint) (func(), error) {
	anc, err := s.Ancestors(ctx, c)
	if err != nil {
		return nil, err
	}
	releases := make([]func(), 0, len(anc))
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
	for _, a := range anc {
		_, release, err := s.acquireSealed(ctx, a.ID)
		if errdefs.IsNotFound(err) {
			err = fmt.Errorf("%s is no longer in the store (see ckptctl ls --quarantined): %w", a.ID, errdefs.ErrDataLoss)
		}
		if err != nil {
			releaseAll()
			return nil, fmt.Errorf("checkpoint %s reads pages from %w", c.Name, err)
		}
		releases = append(releases, release)
	}
	return releaseAll, nil
}

// ChainDepth is how many checkpoints c's images read from.
func (s *Store) ChainDepth(ctx context.Context, c *Checkpoint) (int, error) {
	anc, err := s.Ancestors(ctx, c)
	return len(anc), err
}

// presentChain is Present for c's ancestors, then the proof that the
// chain holds every page c's images take from it.
func (s *Store) presentChain(ctx context.Context, c *Checkpoint) error {
	anc, err := s.Ancestors(ctx, c)
	if err != nil || len(anc) == 0 {
		return err
	}
	for _, a := range anc {
		if err := present(s.layout.Checkpoint(a.ID), a, filesOf(a)); err != nil {
			return fmt.Errorf("checkpoint %s reads pages from %s: %w", c.Name, a.Name, err)
		}
	}
	if err := chain.Check(s.layout.Checkpoint(c.ID)); err != nil {
		return fmt.Errorf("checkpoint %s: its chain is broken: %v: %w", c.Name, trimRoot(err, s.layout.Root), errdefs.ErrDataLoss)
	}
	return nil
}

// trimRoot shortens the state root's paths in err's text.
func trimRoot(err error, root string) string {
	return strings.ReplaceAll(err.Error(), filepath.Join(root, "checkpoints")+"/", "")
}

// SelfContained returns a directory with c's images as a whole checkpoint
// would have them, and its record: for an incremental checkpoint, a copy
// in staging with every page of its chain copied in (the rest hard
// links), which done removes. c is held by the caller.
func (s *Store) SelfContained(ctx context.Context, c *Checkpoint) (dir string, rec *Checkpoint, done func() error, err error) {
	if c.Incremental == nil {
		return s.layout.Checkpoint(c.ID), c, func() error { return nil }, nil
	}
	out := s.layout.Staging(NewID()) // a start removes it if this does not finish
	remove := func() error { return os.RemoveAll(out) }
	written, needsParent, err := chain.Rewrite(ctx, s.layout.Checkpoint(c.ID), out, -1, MetadataFile)
	if err == nil && needsParent {
		err = fmt.Errorf("pages beyond its chain")
	}
	whole := *c
	whole.Incremental = nil
	if err == nil {
		whole.Files, err = filesAfterRewrite(ctx, out, c, written)
	}
	if err != nil {
		return "", nil, nil, errors.Join(fmt.Errorf("copy %s whole: %w", c.Name, err), remove())
	}
	return out, &whole, remove, nil
}
