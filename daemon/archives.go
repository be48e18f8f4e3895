package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ckptd/ckptd/archive"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/store"
)

// importReserve is what an import leaves free on the state root's disk.
const importReserve = 256 << 20

// Export streams checkpoint ref to w as an archive (see package archive),
// holding it against rm meanwhile.
func (d *Daemon) Export(ctx context.Context, ref string, w io.Writer, compression string) (*store.Checkpoint, error) {
	if err := archive.CheckCompression(compression); err != nil {
		return nil, err
	}
	c, release, err := d.store.AcquireSealed(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer release()
	// An archive stands alone: an incremental checkpoint goes whole.
	dir, whole, done, err := d.store.SelfContained(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", c.Name, err)
	}
	err = archive.Write(w, dir, whole, compression)
	if err = errors.Join(err, done()); err != nil {
		return nil, fmt.Errorf("export %s: %w", c.Name, err)
	}
	d.log.Info("checkpoint exported", "id", c.ID, "name", c.Name)
	return c, nil
}

// Import adds the checkpoint archived in r to the store, under name
// (the archive's own when empty). Its files are checked against the
// archive's record; whatever fails, nothing of it stays.
func (d *Daemon) Import(ctx context.Context, r io.Reader, name, source string) (_ *store.Checkpoint, err error) {
	if name != "" {
		if err := store.ValidateName(name); err != nil {
			return nil, err
		}
	}
	id := store.NewID()
	dir, err := d.store.StageUnhashed(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.store.Discard(context.WithoutCancel(ctx), id))
		}
	}()
	rec, err := archive.Read(r, dir, importReserve)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	c, err := d.store.Import(ctx, id, rec, name, source)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	d.log.Info("checkpoint imported", "id", c.ID, "name", c.Name, "from", source, "original_id", rec.ID)
	d.events.Publish(events.Event{Kind: events.Imported, Target: c.Target.Key(), Checkpoint: c.ID, Name: c.Name, Bytes: c.Size()})
	return c, nil
}
