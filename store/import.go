package store

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// CheckImport checks what an archive whose record is rec unpacked into
// the staging directory of id: every file the record lists must be there
// and match its digest, and nothing else may be. The record itself stays
// outside data: the caller builds the one it publishes (package ingest),
// and discards the staging directory when either fails.
//
// What it returns lets PublishVerified skip hashing them again: one read
// per file.
func (s *Store) CheckImport(ctx context.Context, id string, rec *Checkpoint) (*Verified, error) {
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
	v := &Verified{sums: map[string]FileSum{}, stamps: map[string]stamp{}}
	if rec.FormatVersion != FormatVersion {
		return v, nil // its sums are another digest than a publish writes
	}
	for name, sum := range rec.Files {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			v.sums[name], v.stamps[name] = sum, stampOf(st)
		}
	}
	return v, nil
}

// Verified is what CheckImport proved of a staged import: each file's sum
// and the file as it was then, so that one changed since (the ingest
// boundary rewrites a container's spec) is hashed again.
type Verified struct {
	sums   map[string]FileSum
	stamps map[string]stamp
}

type stamp struct {
	ino, size int64
	mtime     time.Time
}

func stampOf(st os.FileInfo) stamp {
	return stamp{ino: int64(inodeOf(st)), size: st.Size(), mtime: st.ModTime()}
}

// unchanged returns the sums of the files in dir still as verified.
func (v *Verified) unchanged(dir string) map[string]FileSum {
	out := map[string]FileSum{}
	if v == nil {
		return out
	}
	for name, sum := range v.sums {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && stampOf(st) == v.stamps[name] {
			out[name] = sum
		}
	}
	return out
}

// PublishVerified is Publish for a checkpoint CheckImport checked: the
// files still as they were then are fsynced, not hashed again.
func (s *Store) PublishVerified(ctx context.Context, c *Checkpoint, v *Verified) error {
	staging := s.layout.Staging(c.ID)
	done := v.unchanged(staging)
	err := sealFiles(staging, slices.Collect(maps.Keys(done)))
	if err == nil {
		err = s.publish(ctx, c, done)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", c.ID, err)
	}
	return nil
}

// sealFiles makes the named files of dir root's alone and fsyncs them, as
// hashing with seal does.
func sealFiles(dir string, names []string) error {
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = f.Chmod(0o600)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("seal %s: %w", name, err)
		}
	}
	return nil
}
