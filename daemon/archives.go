package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ckptd/ckptd/archive"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/foreign"
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
	c, release, err := d.acquire(ctx, ref, true)
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

// importNamespace is the containerd namespace a container checkpoint
// from another engine is restored into.
const importNamespace = "default"

// importForeign publishes a container checkpoint Podman, CRI-O or kubelet
// wrote, unpacked in dir: its record is made here and its files hashed.
func (d *Daemon) importForeign(ctx context.Context, dir string, got *archive.Contents, o ImportOptions) (*store.Checkpoint, error) {
	c, err := foreign.Convert(dir, got.ConfigDump, got.DeletedFiles, importNamespace, o.Name)
	if err != nil {
		return nil, err
	}
	c.Imported = &store.Import{Source: o.Source, OriginalID: c.Container.ID, Time: time.Now().UTC()}
	if c.Dropped, err = d.admitSpec(dir, c); err != nil {
		return nil, err
	}
	if err := d.store.Publish(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// importRecorded publishes a checkpoint ckptd exported, unpacked in dir:
// its files checked against the archive's record rec, its own record
// built afresh.
func (d *Daemon) importRecorded(ctx context.Context, id, dir string, rec *store.Checkpoint, o ImportOptions) (*store.Checkpoint, error) {
	verified, err := d.store.CheckImport(ctx, id, rec)
	if err != nil {
		return nil, err
	}
	c, err := d.admitImported(ctx, id, dir, rec, o)
	if err != nil {
		return nil, err
	}
	if err := d.store.PublishVerified(ctx, c, verified); err != nil {
		return nil, err
	}
	return c, nil
}

// ImportOptions say what an imported archive is called and where it
// came from.
type ImportOptions struct {
	Name   string // the archive's own when empty
	Source string // a file name or an image reference
	// Digest and Size, when set, are what the whole stream must hash
	// to and measure (a registry layer's).
	Digest string
	Size   int64
}

// Import adds the checkpoint archived in r to the store. Its files are
// checked against the archive's record, and the stream against
// o.Digest; whatever fails, nothing of it stays.
func (d *Daemon) Import(ctx context.Context, r io.Reader, o ImportOptions) (_ *store.Checkpoint, err error) {
	if o.Name != "" {
		if err := store.ValidateName(o.Name); err != nil {
			return nil, err
		}
	}
	var digest *archive.DigestReader
	if o.Digest != "" {
		if digest, err = archive.NewDigestReader(r, o.Digest, o.Size); err != nil {
			return nil, err
		}
		r = digest
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
	got, err := archive.Read(r, dir, importReserve)
	switch {
	case err != nil:
	case digest != nil:
		err = digest.Finish()
	default:
		err = archive.Drain(r)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var c *store.Checkpoint
	if got.Record != nil {
		c, err = d.importRecorded(ctx, id, dir, got.Record, o)
	} else {
		c, err = d.importForeign(ctx, dir, got, o)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	d.log.Info("checkpoint imported", "id", c.ID, "name", c.Name, "from", o.Source, "original_id", c.Imported.OriginalID)
	d.events.Publish(events.Event{Kind: events.Imported, Target: c.Target.Key(), Checkpoint: c.ID, Name: c.Name, Bytes: c.Size()})
	return c, nil
}
