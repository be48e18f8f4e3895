package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// A failed dump's or restore's work directory is kept for its CRIU log,
// which the error names; the newest keepFailedWork of each kind are kept,
// none older than maxFailedWorkAge.
const (
	keepFailedWork   = 20
	maxFailedWorkAge = 7 * 24 * time.Hour
)

// WorkDir is CRIU's work directory for one dump, incoming migration or
// restore: its log and statistics. Close removes it after success and
// keeps it after a failure, pruning older failures.
type WorkDir struct {
	Path string
	s    *Store
}

// NewDumpWork creates dumps/<id>/.
func (s *Store) NewDumpWork(id string) (*WorkDir, error) {
	if !validID(id) {
		return nil, fmt.Errorf("work dir %q: invalid id", id)
	}
	path := s.layout.Dump(id)
	if err := os.Mkdir(path, 0o700); err != nil {
		return nil, err
	}
	return s.track(path), nil
}

// NewRestoreWork creates restores/<id>-<random>/: restores of one
// checkpoint may run side by side.
func (s *Store) NewRestoreWork(id string) (*WorkDir, error) {
	path, err := os.MkdirTemp(s.layout.RestoresDir(), id+"-")
	if err != nil {
		return nil, err
	}
	return s.track(path), nil
}

func (s *Store) track(path string) *WorkDir {
	s.mu.Lock()
	s.active[path] = true
	s.mu.Unlock()
	return &WorkDir{Path: path, s: s}
}

// Close ends the work: after success the directory goes; after a failure
// it stays (errors name the log in it) and older failures are pruned.
func (w *WorkDir) Close(failed bool) error {
	s := w.s
	s.mu.Lock()
	delete(s.active, w.Path)
	s.mu.Unlock()
	if !failed {
		if err := os.RemoveAll(w.Path); err != nil {
			return fmt.Errorf("remove work dir: %w", err)
		}
		return nil
	}
	return s.pruneFailedWork(filepath.Dir(w.Path))
}

// PruneFailedWork applies the bounds to both kinds of work directory.
func (s *Store) PruneFailedWork() error {
	return errors.Join(s.pruneFailedWork(s.layout.DumpsDir()), s.pruneFailedWork(s.layout.RestoresDir()))
}

// pruneFailedWork removes kept work directories of parent beyond the
// bounds. Directories in use, and those holding a paused-container
// marker (the next start resumes that container from it), stay.
func (s *Store) pruneFailedWork(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	type kept struct {
		path string
		mod  time.Time
	}
	var all []kept
	s.mu.Lock()
	for _, e := range entries {
		p := filepath.Join(parent, e.Name())
		if s.active[p] || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(p, PausedFile)); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if info, err := e.Info(); err == nil {
			all = append(all, kept{p, info.ModTime()})
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	var errs []error
	for i, k := range all {
		if i < keepFailedWork && time.Since(k.mod) < maxFailedWorkAge {
			continue
		}
		s.log.Info("pruning the work dir of an old failure", "dir", k.path, "modified", k.mod)
		errs = append(errs, os.RemoveAll(k.path))
	}
	return errors.Join(errs...)
}
