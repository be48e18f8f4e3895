package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

// Sealing after release: a checkpoint whose target keeps running
// (--leave-running) is committed while the target is frozen at the cost of
// a rename and an index commit, and hashed and fsynced after the target
// runs again. Nothing can be lost by this: the target still runs, so a seal
// that fails only fails the checkpoint. A ckptd that dies meanwhile leaves
// the images in the page cache, and its next start, in the same boot,
// seals them; after a reboot they may never have reached the disk, so such
// a checkpoint is quarantined. See docs/architecture.md.

// sealJob is one checkpoint being sealed; done closes when it ends, err
// says how.
type sealJob struct {
	done chan struct{}
	err  error
	pre  *prehasher // the dump's background hashing, nil when resealing
}

// PublishSealing commits the staged checkpoint c in the sealing state: its
// record (with the boot id) is written, its directory renamed into place
// and its index entry committed, with no hashing and no fsync. Seal must
// follow. The checkpoint is held against rm until it is sealed.
func (s *Store) PublishSealing(ctx context.Context, c *Checkpoint) error {
	if err := s.publishSealing(c, false); err != nil {
		return fmt.Errorf("publish %s: %w", c.ID, err)
	}
	return nil
}

// PublishDurable is PublishSealing for a target about to be killed: every
// file is fsynced first, and the record, the directories and the index
// durably written, so that the checkpoint outlives a crash or a reboot
// before it is sealed. It returns how long all that took: the frozen
// target's wait for the disk. Hashing is left to Seal, after the target
// is gone.
func (s *Store) PublishDurable(ctx context.Context, c *Checkpoint) (time.Duration, error) {
	start := time.Now()
	if err := syncFiles(s.layout.Staging(c.ID)); err != nil {
		return 0, fmt.Errorf("publish %s: %w", c.ID, err)
	}
	c.Synced = true
	if err := s.publishSealing(c, true); err != nil {
		return 0, fmt.Errorf("publish %s: %w", c.ID, err)
	}
	return time.Since(start), nil
}

func (s *Store) publishSealing(c *Checkpoint, durable bool) error {
	if !validID(c.ID) {
		return fmt.Errorf("id %q: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	c.FormatVersion, c.State, c.BootID, c.Files = FormatVersion, StateSealing, s.bootID, nil
	staging := s.layout.Staging(c.ID)
	if err := writeRecord(staging, c, durable); err != nil {
		return err
	}
	if durable {
		if err := syncDir(staging); err != nil {
			return err
		}
	}
	if err := os.Rename(staging, s.layout.Checkpoint(c.ID)); err != nil {
		return err
	}
	if durable {
		if err := syncDir(s.layout.CheckpointsDir()); err != nil {
			return errors.Join(err, os.Rename(s.layout.Checkpoint(c.ID), staging))
		}
	}
	job := &sealJob{done: make(chan struct{}), pre: s.takePrehash(c.ID)}
	s.startSealing(c.ID, job)
	if err := s.indexNew(c); err != nil {
		s.endSealing(c.ID, job, err)
		// Back to staging, where Discard looks for what a failed dump left.
		return errors.Join(err, os.Rename(s.layout.Checkpoint(c.ID), staging))
	}
	return nil
}

// syncFiles seals (see sealFiles) every regular file in dir.
func syncFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return sealFiles(dir, names)
}

func (s *Store) startSealing(id string, job *sealJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealing[id] = job
	s.busy[id]++
}

func (s *Store) endSealing(id string, job *sealJob, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.pre != nil {
		job.pre.abort()
	}
	job.err = err
	delete(s.sealing, id)
	if s.busy[id]--; s.busy[id] == 0 {
		delete(s.busy, id)
	}
	close(job.done)
}

// Seal finishes a checkpoint committed by PublishSealing: it moves the
// files CRIU closed last from workDir into it, hashes and fsyncs every
// file, records stats and marks it sealed. A seal that fails removes the
// checkpoint (its target was released and runs on) and says why.
func (s *Store) Seal(ctx context.Context, id string, stats *DumpStats, workDir string, files ...string) (*Checkpoint, error) {
	s.mu.Lock()
	job := s.sealing[id]
	s.mu.Unlock()
	if job == nil {
		return nil, fmt.Errorf("seal %s: not sealing: %w", id, errdefs.ErrFailedPrecondition)
	}
	c, err := s.seal(ctx, id, job, stats, workDir, files)
	if err != nil {
		err = fmt.Errorf("seal %s: %w", id, err)
		if ctx.Err() == nil && !s.synced(id) {
			err = errors.Join(err, s.dropUnsealed(id))
		}
	}
	s.endSealing(id, job, err)
	return c, err
}

func (s *Store) seal(ctx context.Context, id string, job *sealJob, stats *DumpStats, workDir string, files []string) (*Checkpoint, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	dir := s.layout.Checkpoint(id)
	if err := moveIn(workDir, dir, files); err != nil {
		return nil, err
	}
	if err := s.dedup(ctx, c, dir); err != nil {
		return nil, err
	}
	var done map[string]FileSum
	if job.pre != nil {
		done = job.pre.finish(dir)
		job.pre = nil
	}
	sums, err := sumDir(ctx, dir, done)
	if err != nil {
		return nil, err
	}
	c.Files, c.State, c.Sealed = sums, StateSealed, time.Now().UTC()
	if stats != nil {
		c.Stats = stats
	}
	if err := writeMetadata(dir, c); err != nil {
		return nil, err
	}
	if err := syncDir(s.layout.CheckpointsDir()); err != nil {
		return nil, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return putTx(tx, c) })
	return c, err
}

// synced tells whether the checkpoint id was durable before its target was
// released: its target may be gone, so a failed seal keeps it (sealing,
// sealed again at the next start) rather than lose it.
func (s *Store) synced(id string) bool {
	c, err := s.Get(context.Background(), id)
	return err == nil && c.Synced
}

// dropUnsealed removes a checkpoint whose seal failed: into the trash,
// out of the index, then off the disk.
func (s *Store) dropUnsealed(id string) error {
	c, err := s.Get(context.Background(), id)
	if err != nil {
		return err
	}
	// Through the trash, which a start empties, so that a crash leaves
	// neither half a directory nor an index entry without one.
	if err := os.Rename(s.layout.Checkpoint(id), s.layout.Trash(id)); err != nil {
		return err
	}
	if err := s.unindex(c); err != nil {
		return err
	}
	s.log.Error("checkpoint removed: it could not be sealed", "id", id, "name", c.Name)
	return os.RemoveAll(s.layout.Trash(id))
}

// WaitSealed waits until the checkpoint id is sealed and returns its
// record; a seal that failed is that error.
func (s *Store) WaitSealed(ctx context.Context, id string) (*Checkpoint, error) {
	s.mu.Lock()
	job := s.sealing[id]
	s.mu.Unlock()
	if job != nil {
		select {
		case <-job.done:
			if job.err != nil {
				return nil, fmt.Errorf("checkpoint %s could not be sealed: %w", id, job.err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for checkpoint %s to be sealed: %w", id, ctx.Err())
		}
	}
	c, err := s.Get(ctx, id)
	if err == nil && c.IsSealing() {
		err = fmt.Errorf("checkpoint %s is still sealing and nothing seals it: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, err
}

// resumeSealing handles a sealing checkpoint found at start. In the same
// boot its files are in the page cache, and one published durably
// (Synced) is on disk: it is sealed again in the background. Otherwise,
// after a reboot, its pages may never have reached the disk: it is
// quarantined.
func (s *Store) resumeSealing(c *Checkpoint) (quarantined bool, err error) {
	if !c.Synced && (c.BootID == "" || c.BootID != s.bootID) {
		reason := fmt.Sprintf("its sealing was interrupted by a reboot (sealing in boot %s, now boot %s): pages that never reached the disk may be lost", c.BootID, s.bootID)
		s.log.Error("checkpoint moved to quarantine", "id", c.ID, "name", c.Name, "err", reason,
			"quarantine", s.layout.Quarantine(c.ID))
		return true, s.quarantine(c.ID, reason)
	}
	s.log.Warn("sealing a checkpoint an interrupted ckptd left unsealed", "id", c.ID, "name", c.Name)
	job := &sealJob{done: make(chan struct{})}
	s.startSealing(c.ID, job)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if _, err := s.Seal(s.bgCtx, c.ID, nil, ""); err != nil {
			s.log.Error("seal checkpoint", "id", c.ID, "err", err)
		} else {
			s.log.Info("checkpoint sealed", "id", c.ID, "name", c.Name)
		}
	}()
	return false, nil
}

// BootID is the kernel's id of the running boot.
func BootID() (string, error) {
	if bootIDOverride != "" {
		return bootIDOverride, nil
	}
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
