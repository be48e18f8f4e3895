package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
)

// Target is a process tree ckptd knows: one it launched, restored, or
// checkpointed. RestoredFrom links a restored copy to its checkpoint, which
// is how lineage continues across restores.
type Target struct {
	TargetRef
	// StartTime is the root's start time in clock ticks since boot
	// (/proc/PID/stat field 22): with the PID it tells a live target from
	// a reused PID.
	StartTime    uint64    `json:"start_time"`
	RestoredFrom string    `json:"restored_from,omitempty"`
	Created      time.Time `json:"created"`
	// InDoubt says why a migrated tree is kept stopped: the source never
	// confirmed its own copy gone. ckptctl migrate --resolve settles it.
	InDoubt string `json:"in_doubt,omitempty"`
	// Filling says a post-copy was still filling its memory: a ckptd that
	// finds it so at start ends it, since its missing pages read as zeros.
	Filling string `json:"filling,omitempty"`
	// Exit is how it ended, once ckptd saw it end ("exited 0", "killed by
	// SIGKILL"), kept so that a restarted ckptd says the same.
	Exit string `json:"exit,omitempty"`
	// Network is its own network namespace and its place on ckptd's
	// network, until it ends (nil: the host's).
	Network *network.Attachment `json:"network,omitempty"`
	// ScaleToZero is set when ckptd holds its published ports and puts it
	// to sleep and wakes it (package activator).
	ScaleToZero *ScaleToZero `json:"scale_to_zero,omitempty"`
	// Launch is how run started it, for a restart; Restarts counts them.
	Launch   *Launch `json:"launch,omitempty"`
	Restarts int     `json:"restarts,omitempty"`
}

// Launch is what run was given beyond the command (TargetRef.Command).
type Launch struct {
	Env     []string `json:"env,omitempty"`
	Dir     string   `json:"dir,omitempty"`
	User    string   `json:"user,omitempty"`
	Net     string   `json:"net,omitempty"`
	Publish []string `json:"publish,omitempty"`
}

// ScaleToZero is a workload that sleeps when idle and wakes on its next
// connection.
type ScaleToZero struct {
	// IdleAfter is how long it may have no connection before it sleeps
	// (0: only when asked).
	IdleAfter time.Duration `json:"idle_after,omitempty"`
	// Ports are its published ports, which ckptd holds (not portmap).
	Ports []network.Port `json:"ports"`
	// Checkpoint is the checkpoint it sleeps in; empty while it runs.
	Checkpoint string `json:"checkpoint,omitempty"`
	// WakeError is why its last wake failed; it sleeps on.
	WakeError string `json:"wake_error,omitempty"`
}

// Hibernated says t sleeps in a checkpoint, its network and ports kept.
func (t *Target) Hibernated() bool { return t.ScaleToZero != nil && t.ScaleToZero.Checkpoint != "" }

// PutTarget records or replaces a target: in its own file first, so that
// a lost index loses no running target (see syncTargets), then in the
// index. The file is renamed into place without fsyncs: it must outlive
// ckptd, not the machine, whose crash ends every running target with it,
// and a restore writes it while its tree is frozen.
func (s *Store) PutTarget(ctx context.Context, t *Target) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if err := writeFileRenamed(s.layout.TargetRecord(t.Key()), v, false); err != nil {
		return fmt.Errorf("record target %s: %w", t.Key(), err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).Put([]byte(t.Key()), v)
	})
}

// syncTargets makes the index's targets match their record files, which
// are written first and so are never older: a lost or damaged index, or a
// crash between a record's file and its index entry, loses nothing. An
// index entry without a file (a store from before the files) gets one. A
// file that does not parse is left where it is.
func (s *Store) syncTargets() error {
	entries, err := os.ReadDir(s.layout.TargetsDir())
	if err != nil {
		return err
	}
	filed := map[string]bool{}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTargets)
		for _, e := range entries {
			path := filepath.Join(s.layout.TargetsDir(), e.Name())
			if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			v, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			var t Target
			if err := json.Unmarshal(v, &t); err != nil || s.layout.TargetRecord(t.Key()) != path {
				s.log.Warn("unreadable target record; left as it is", "path", path, "err", err)
				continue
			}
			filed[t.Key()] = true
			if bytes.Equal(b.Get([]byte(t.Key())), v) {
				continue
			}
			s.log.Info("target record put back into the index", "target", t.Key(), "pid", t.PID)
			if err := b.Put([]byte(t.Key()), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).ForEach(func(k, v []byte) error {
			if filed[string(k)] {
				return nil
			}
			return writeFileRenamed(s.layout.TargetRecord(string(k)), v, false)
		})
	})
}

// DeleteTarget forgets a target: its index entry, then its file (a crash
// between the two brings it back at the next start, to be forgotten again).
func (s *Store) DeleteTarget(ctx context.Context, key string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).Delete([]byte(key))
	})
	if err != nil {
		return err
	}
	if err := os.Remove(s.layout.TargetRecord(key)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("forget target %s: %w", key, err)
	}
	return nil
}

// GetTarget returns the target with this key, or NotFound.
func (s *Store) GetTarget(ctx context.Context, key string) (*Target, error) {
	var t *Target
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTargets).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("target %s: %w", key, errdefs.ErrNotFound)
		}
		t = &Target{}
		return json.Unmarshal(v, t)
	})
	return t, err
}

// ListTargets returns every known target, oldest first.
func (s *Store) ListTargets(ctx context.Context) ([]*Target, error) {
	var out []*Target
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).ForEach(func(_, v []byte) error {
			t := &Target{}
			if err := json.Unmarshal(v, t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}
