package store

import (
	"context"
	"fmt"
	"os"

	"github.com/ckptd/ckptd/errdefs"
)

// CheckImport checks what an archive whose record is rec unpacked into
// the staging directory of id: every file the record lists must be there
// and match its digest, and nothing else may be. The record itself stays
// outside data: the caller builds the one it publishes (package ingest),
// and discards the staging directory when either fails.
func (s *Store) CheckImport(ctx context.Context, id string, rec *Checkpoint) error {
	if err := validRecord(rec, rec.ID); err != nil {
		return fmt.Errorf("archive record: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if rec.IsSealing() || len(rec.Files) == 0 {
		return fmt.Errorf("archive of checkpoint %s holds no sealed checkpoint: %w", rec.ID, errdefs.ErrInvalidArgument)
	}
	if rec.Incremental != nil { // ckptd exports a self-contained copy
		return fmt.Errorf("archive of checkpoint %s holds only its changes over %s: %w", rec.ID, rec.Incremental.Parent, errdefs.ErrInvalidArgument)
	}
	dir := s.layout.Staging(id)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := rec.Files[e.Name()]; !ok {
			return fmt.Errorf("archive holds %s, which its record does not list: %w", e.Name(), errdefs.ErrInvalidArgument)
		}
	}
	if err := verifyFiles(ctx, dir, rec, hashOptions{}); err != nil {
		return fmt.Errorf("archive of checkpoint %s is damaged: %w", rec.Name, err)
	}
	return nil
}
