package store

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// Import publishes a checkpoint unpacked into the staging directory of id
// from an archive whose record is rec. Every file the record lists must
// be there and match its digest, and nothing else may be. It becomes a
// new checkpoint of this store under name (rec's when empty), keeping
// rec's parent only if this store has it. The caller discards the staging
// directory when Import fails.
func (s *Store) Import(ctx context.Context, id string, rec *Checkpoint, name, source string) (*Checkpoint, error) {
	if err := validRecord(rec, rec.ID); err != nil {
		return nil, fmt.Errorf("archive record: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if rec.IsSealing() || len(rec.Files) == 0 {
		return nil, fmt.Errorf("archive of checkpoint %s holds no sealed checkpoint: %w", rec.ID, errdefs.ErrInvalidArgument)
	}
	if rec.Incremental != nil { // ckptd exports a self-contained copy
		return nil, fmt.Errorf("archive of checkpoint %s holds only its changes over %s: %w", rec.ID, rec.Incremental.Parent, errdefs.ErrInvalidArgument)
	}
	dir := s.layout.Staging(id)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if _, ok := rec.Files[e.Name()]; !ok {
			return nil, fmt.Errorf("archive holds %s, which its record does not list: %w", e.Name(), errdefs.ErrInvalidArgument)
		}
	}
	if err := verifyFiles(ctx, dir, rec, hashOptions{}); err != nil {
		return nil, fmt.Errorf("archive of checkpoint %s is damaged: %w", rec.Name, err)
	}
	c := *rec
	c.ID, c.State, c.BootID, c.Sealed, c.Scheduled = id, "", "", time.Time{}, false
	c.Imported = &Import{Source: source, OriginalID: rec.ID, Time: time.Now().UTC()}
	if name != "" {
		c.Name = name
	}
	if c.Parent != "" {
		if _, err := s.Get(ctx, c.Parent); err != nil {
			c.Parent = ""
		}
	}
	if err := s.Publish(ctx, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
