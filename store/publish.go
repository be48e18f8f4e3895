package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// Stage creates the staging directory a new checkpoint is written into.
// Its page images are hashed in the background as they grow, so that
// publishing, done while a target is frozen, has little left to do.
func (s *Store) Stage(ctx context.Context, id string) (string, error) {
	return s.stage(id, hashAndWriteback)
}

// StageUnhashed is Stage without the background hashing: for a checkpoint
// published only after its target runs again (an incoming migration),
// where hashing would take CPU from the transfer and restore.
func (s *Store) StageUnhashed(ctx context.Context, id string) (string, error) {
	return s.stage(id, noPrehash)
}

// StageWriteback is Stage for images rewritten before they are hashed (an
// incremental checkpoint's pages, deduplicated against its parent): their
// writeback still starts while CRIU writes them.
func (s *Store) StageWriteback(ctx context.Context, id string) (string, error) {
	return s.stage(id, writebackOnly)
}

type prehashMode int

const (
	noPrehash prehashMode = iota
	hashAndWriteback
	writebackOnly
)

func (s *Store) stage(id string, mode prehashMode) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("checkpoint id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	dir := s.layout.Staging(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("stage %s: %w", id, err)
	}
	if mode != noPrehash {
		s.mu.Lock()
		s.pre[id] = startPrehash(dir, mode == hashAndWriteback)
		s.mu.Unlock()
	}
	return dir, nil
}

// takePrehash detaches the background hashing of a staged checkpoint.
func (s *Store) takePrehash(id string) *prehasher {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pre[id]
	delete(s.pre, id)
	return p
}

// Discard removes whatever an unfinished checkpoint left: its staging
// directory, or its directory if it was renamed but never indexed.
func (s *Store) Discard(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("checkpoint id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	if p := s.takePrehash(id); p != nil {
		p.abort()
	}
	if _, err := s.Get(ctx, id); err == nil {
		return fmt.Errorf("discard %s: checkpoint is published: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err := os.RemoveAll(s.layout.Staging(id)); err != nil {
		return fmt.Errorf("discard %s: %w", id, err)
	}
	if err := os.RemoveAll(s.layout.Checkpoint(id)); err != nil {
		return fmt.Errorf("discard %s: %w", id, err)
	}
	return nil
}

// Publish seals the staged checkpoint c.ID: it hashes and fsyncs every file,
// writes checkpoint.json, renames the directory into place and only then
// commits the index entry. A checkpoint is visible only once all of that is
// done.
func (s *Store) Publish(ctx context.Context, c *Checkpoint) error {
	if err := s.publish(ctx, c, nil); err != nil {
		return fmt.Errorf("publish %s: %w", c.ID, err)
	}
	return nil
}

// publish seals and publishes; done holds sums already taken (and files
// already fsynced) by the caller.
func (s *Store) publish(ctx context.Context, c *Checkpoint, done map[string]FileSum) error {
	if !validID(c.ID) {
		return fmt.Errorf("id %q: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	staging := s.layout.Staging(c.ID)
	if err := s.dedup(ctx, c, staging); err != nil {
		return err
	}
	if done == nil {
		done = map[string]FileSum{}
	}
	if p := s.takePrehash(c.ID); p != nil {
		maps.Copy(done, p.finish(staging))
	}
	sums, err := sumDir(context.Background(), staging, done)
	if err != nil {
		return err
	}
	c.FormatVersion = FormatVersion
	c.Files = sums
	c.State, c.Sealed = StateSealed, time.Now().UTC()
	if err := writeMetadata(staging, c); err != nil {
		return err
	}
	if err := syncDir(staging); err != nil {
		return err
	}
	final := s.layout.Checkpoint(c.ID)
	if err := os.Rename(staging, final); err != nil {
		return err
	}
	if err := syncDir(s.layout.CheckpointsDir()); err != nil {
		return err
	}
	if err := s.indexNew(c); err != nil {
		return err
	}
	return removePending(final)
}

// indexNew commits a new checkpoint's index entry: the moment it exists.
func (s *Store) indexNew(c *Checkpoint) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		names := tx.Bucket(bucketNames)
		if names.Get([]byte(c.Name)) != nil {
			return fmt.Errorf("checkpoint name %q is taken: choose another with --name: %w", c.Name, errdefs.ErrAlreadyExists)
		}
		if c.Parent != "" && tx.Bucket(bucketCheckpoints).Get([]byte(c.Parent)) == nil {
			return fmt.Errorf("parent %s: %w", c.Parent, errdefs.ErrNotFound)
		}
		if err := names.Put([]byte(c.Name), []byte(c.ID)); err != nil {
			return err
		}
		if err := noteNumberTx(tx, c.Name); err != nil {
			return err
		}
		return putTx(tx, c)
	})
}

// Finish records what CRIU wrote after the checkpoint was published: its
// statistics, and the files it closed last (the log, stats-dump), moved
// from its work directory workDir (under the state root) into the
// checkpoint. It holds the checkpoint against rm meanwhile; one removed
// before it started is NotFound.
func (s *Store) Finish(ctx context.Context, id string, stats *DumpStats, workDir string, files ...string) error {
	c, release, err := s.Acquire(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	dir := s.layout.Checkpoint(c.ID)
	if err := moveIn(workDir, dir, files); err != nil {
		return fmt.Errorf("finish %s: %w", id, err)
	}
	sums, err := sumFiles(ctx, dir, files, hashOptions{format: c.FormatVersion, seal: true})
	if err != nil {
		return fmt.Errorf("finish %s: %w", id, err)
	}
	maps.Copy(c.Files, sums)
	c.Stats = stats
	if err := writeMetadata(dir, c); err != nil {
		return fmt.Errorf("finish %s: %w", id, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return putTx(tx, c) })
}

func writeMetadata(dir string, c *Checkpoint) error { return writeRecord(dir, c, true) }

// writeRecord writes c's checkpoint.json in dir; without durable, it only
// has to outlive a crash of ckptd, not of the machine (a sealing
// checkpoint from an earlier boot is quarantined anyway).
func writeRecord(dir string, c *Checkpoint, durable bool) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileRenamed(filepath.Join(dir, MetadataFile), append(data, '\n'), durable)
}

// moveIn moves the named files from workDir into dir.
func moveIn(workDir, dir string, files []string) error {
	for _, name := range files {
		if err := os.Rename(filepath.Join(workDir, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// sumDir hashes and fsyncs every regular file in dir but checkpoint.json;
// the sums in done were already taken. A cancelled ctx stops it.
func sumDir(ctx context.Context, dir string, done map[string]FileSum) (map[string]FileSum, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	sums := make(map[string]FileSum, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == MetadataFile || e.Name() == PendingFile {
			continue
		}
		if sum, ok := done[e.Name()]; ok {
			sums[e.Name()] = sum
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	more, err := sumFiles(ctx, dir, names, hashOptions{format: FormatVersion, seal: true})
	maps.Copy(sums, more)
	return sums, err
}
