package daemon

import (
	"context"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// parentOf is the target's latest checkpoint or, for a restored copy not
// yet checkpointed, the checkpoint it was restored from. A group's member
// is no parent: a group is removed whole, with no descendants to keep.
func (d *Daemon) parentOf(ctx context.Context, t *store.Target) (string, error) {
	latest, err := d.store.Latest(ctx, t.Key())
	if err == nil && latest.Created.After(t.Created) {
		if latest.Group != "" {
			return "", nil
		}
		return latest.ID, nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return "", err
	}
	if t.RestoredFrom != "" {
		if c, err := d.store.Get(ctx, t.RestoredFrom); err == nil && c.Group == "" {
			return t.RestoredFrom, nil
		}
	}
	// A new process under a reused name starts a new chain.
	return "", nil
}

// incrementalOver says whether a new checkpoint is stored as its changes
// over parent p (held and sealed): not past the chain depth, and only over
// a chain that holds every page it points to.
func (d *Daemon) incrementalOver(ctx context.Context, p *store.Checkpoint) *store.Incremental {
	if d.chainDepth == 0 {
		return nil
	}
	depth, err := d.store.ChainDepth(ctx, p)
	if err == nil && depth >= d.chainDepth {
		return nil // a new chain starts with a whole checkpoint
	}
	if err == nil {
		err = d.store.Present(ctx, p)
	}
	if err != nil {
		d.log.Warn("storing a checkpoint whole: its parent cannot serve as a base", "parent", p.ID, "err", err)
		return nil
	}
	return &store.Incremental{Parent: p.ID}
}
