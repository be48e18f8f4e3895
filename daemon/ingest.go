package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/ingest"
	"github.com/ckptd/ckptd/store"
)

// admitImported builds the record of an archived checkpoint that passed
// store.CheckImport, from outside record rec, and strips its staged
// container spec (dir) as this host's policy says: nothing of rec is
// copied whole (package ingest).
func (d *Daemon) admitImported(ctx context.Context, id, dir string, rec *store.Checkpoint, o ImportOptions) (*store.Checkpoint, error) {
	c, dropped := ingest.Record(rec, ingest.DefaultHost)
	c.ID, c.Name = id, rec.Name
	if o.Name != "" {
		c.Name = o.Name
	}
	if rec.Parent != "" { // lineage only: the import holds all it needs
		if _, err := d.store.Get(ctx, rec.Parent); err == nil {
			c.Parent = rec.Parent
		}
	}
	c.Imported = &store.Import{Source: o.Source, OriginalID: rec.ID, Time: time.Now().UTC()}
	more, err := d.admitSpec(dir, c)
	if err != nil {
		return nil, err
	}
	c.Dropped = append(dropped, more...)
	if err := d.admitCreds(dir, c); err != nil {
		return nil, err
	}
	return c, admitOwner(ctx, c)
}

// admitOwner makes c, from outside, its importer's. A caller who is not
// root may bring in only a tree that runs wholly as itself.
func admitOwner(ctx context.Context, c *store.Checkpoint) error {
	caller := access.From(ctx)
	if caller.IsRoot() {
		return nil
	}
	if c.Target.Kind == store.KindContainer {
		return caller.Need("a container checkpoint")
	}
	if u := c.RunsAs; u == nil || u.UID != caller.UID || u.Several {
		return fmt.Errorf("checkpoint %s runs as %s, not as you (uid %d): %w", c.Name, c.RunsAs, caller.UID, errdefs.ErrPermissionDenied)
	}
	c.Target.Owner = caller.UID
	return nil
}

// admitCreds reads who the tree of c, a process or workload checkpoint
// from outside whose images are in dir, runs as once restored (CRIU
// gives back the saved credentials), and refuses root unless this host's
// policy allows it.
func (d *Daemon) admitCreds(dir string, c *store.Checkpoint) error {
	if c.Target.Kind == store.KindContainer {
		return nil // confined by its spec, which admitSpec checked
	}
	creds, err := images.TreeCreds(dir)
	if err != nil {
		return fmt.Errorf("checkpoint %s: who it runs as: %w", c.Name, err)
	}
	if creds.Root && !d.trust.Root {
		return fmt.Errorf("checkpoint %s: its processes run as root, as a restore would give them back (allowed only by trust_root in ckptd's config): %w",
			c.Name, errdefs.ErrPermissionDenied)
	}
	c.RunsAs = &store.User{UID: creds.UID, GID: creds.GID, Several: creds.Several}
	return nil
}

// admitSpec checks and strips the container spec of c, from outside, in
// dir (ingest.Spec under this host's policy).
func (d *Daemon) admitSpec(dir string, c *store.Checkpoint) ([]string, error) {
	if c.Target.Kind != store.KindContainer {
		return nil, nil
	}
	path := filepath.Join(dir, store.ContainerSpecFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("container checkpoint without its spec: %w", err)
	}
	dropped, err := ingest.Spec(path, d.trust)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", c.Name, err)
	}
	return dropped, nil
}

// droppedWarnings are what a restore of c says of what stayed out of it
// at the boundary.
func droppedWarnings(c *store.Checkpoint) []string {
	var out []string
	if u := c.RunsAs; u != nil {
		out = append(out, "from outside, runs as "+u.String())
	}
	for _, d := range c.Dropped {
		out = append(out, "from outside, restored without "+d)
	}
	return out
}
