// Package store keeps checkpoints on disk and their index in bbolt. It owns
// the state root's layout; every other package asks it for paths.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ckptd/ckptd/errdefs"
)

var (
	bucketCheckpoints = []byte("checkpoints") // id -> Checkpoint JSON
	bucketNames       = []byte("names")       // name -> id
	bucketTargets     = []byte("targets")     // target key -> Target JSON
)

// Store is the checkpoint store. It is safe for concurrent use.
type Store struct {
	layout Layout
	db     *bolt.DB
	log    *slog.Logger

	bootID string

	persistMu sync.Mutex // the persisted targets' read-modify-write

	mu      sync.Mutex
	pre     map[string]*prehasher // staged id -> background hashing of its images
	busy    map[string]int        // id -> readers holding it (Acquire); rm refuses these
	active  map[string]bool       // work dirs in use (see WorkDir)
	sealing map[string]*sealJob   // id -> its seal, while it is sealing
	// rewriting: id -> closed when the fold rewriting it ends (Acquire waits)
	rewriting map[string]chan struct{}
	reserved  int64 // bytes promised to writers from outside (Reserve)

	// Background work (seals resumed at start) stops with bgCtx at Close.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// Open opens (creating if needed) the store under root and recovers from
// any crash: staging leftovers and damaged or missing checkpoints are
// removed from view and reported in the log.
func Open(ctx context.Context, root string, log *slog.Logger) (*Store, error) {
	l := Layout{Root: root}
	if err := l.Ensure(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(l.Index(), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: locked by another ckptd: %w", l.Index(), errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open index %s: %w", l.Index(), err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCheckpoints, bucketNames, bucketNumbers, bucketTargets, bucketSchedules, bucketFolds} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init index: %w", err)
	}
	boot, err := BootID()
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{layout: l, db: db, log: log, bootID: boot, pre: map[string]*prehasher{}, busy: map[string]int{},
		active: map[string]bool{}, sealing: map[string]*sealJob{}, rewriting: map[string]chan struct{}{}}
	s.bgCtx, s.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.recover(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("recover store: %w", err)
	}
	if err := s.PruneFailedWork(); err != nil {
		log.Warn("prune the work dirs of old failures", "err", err)
	}
	return s, nil
}

// Close stops background hashing and sealing and closes the index. A
// checkpoint whose seal it stops stays sealing, for the next start.
func (s *Store) Close() error {
	s.bgCancel()
	s.bg.Wait()
	s.mu.Lock()
	for id, p := range s.pre {
		p.abort()
		delete(s.pre, id)
	}
	s.mu.Unlock()
	return s.db.Close()
}

// Layout returns the on-disk layout of this store.
func (s *Store) Layout() Layout { return s.layout }

// Dir is the directory of a published checkpoint.
func (s *Store) Dir(id string) string { return s.layout.Checkpoint(id) }

// Get finds a checkpoint by id, unique id prefix, or name.
func (s *Store) Get(ctx context.Context, ref string) (*Checkpoint, error) {
	var c *Checkpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = getTx(tx, ref)
		return err
	})
	return c, err
}

func getTx(tx *bolt.Tx, ref string) (*Checkpoint, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty checkpoint reference: %w", errdefs.ErrInvalidArgument)
	}
	cb := tx.Bucket(bucketCheckpoints)
	if id := tx.Bucket(bucketNames).Get([]byte(ref)); id != nil {
		return decode(cb.Get(id))
	}
	var found []byte
	c := cb.Cursor()
	for k, v := c.Seek([]byte(ref)); k != nil && strings.HasPrefix(string(k), ref); k, v = c.Next() {
		if found != nil {
			return nil, fmt.Errorf("checkpoint %q is ambiguous, give more of its id: %w", ref, errdefs.ErrInvalidArgument)
		}
		found = v
	}
	if found == nil {
		return nil, fmt.Errorf("checkpoint %q: %w", ref, errdefs.ErrNotFound)
	}
	return decode(found)
}

func decode(v []byte) (*Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("decode index entry: %w", err)
	}
	return &c, nil
}

// Filter narrows List. Empty fields match everything.
type Filter struct {
	TargetKey string
}

// List returns checkpoints oldest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Checkpoint, error) {
	var out []*Checkpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(_, v []byte) error {
			c, err := decode(v)
			if err != nil {
				return err
			}
			if f.TargetKey == "" || c.Target.Key() == f.TargetKey {
				out = append(out, c)
			}
			return nil
		})
	})
	sortByCreated(out)
	return out, err
}

func sortByCreated(cs []*Checkpoint) {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Created.Before(cs[j].Created) })
}

// Acquire finds a checkpoint as Get does and keeps rm from removing it
// until release is called: restores and inspections hold it while they
// read its files.
// A checkpoint being rewritten (a fold) is waited for.
func (s *Store) Acquire(ctx context.Context, ref string) (c *Checkpoint, release func(), err error) {
	s.mu.Lock()
	for {
		if c, err = s.Get(ctx, ref); err != nil {
			s.mu.Unlock()
			return nil, nil, err
		}
		ch := s.rewriting[c.ID]
		if ch == nil {
			break
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for checkpoint %s being rewritten: %w", c.Name, ctx.Err())
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	id := c.ID
	s.busy[id]++
	return c, func() {
		s.mu.Lock()
		if s.busy[id]--; s.busy[id] == 0 {
			delete(s.busy, id)
		}
		s.mu.Unlock()
	}, nil
}

// AcquireSealed is Acquire that also waits for a checkpoint still sealing:
// what readers of its files (restore, export, verify) and a child naming
// it as parent need. A seal that failed is that error. An incremental
// checkpoint's ancestors are held with it; one missing is ErrDataLoss.
func (s *Store) AcquireSealed(ctx context.Context, ref string) (*Checkpoint, func(), error) {
	c, release, err := s.acquireSealed(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	releaseChain, err := s.acquireChain(ctx, c)
	if err != nil {
		release()
		return nil, nil, err
	}
	return c, func() { releaseChain(); release() }, nil
}

func (s *Store) acquireSealed(ctx context.Context, ref string) (*Checkpoint, func(), error) {
	c, release, err := s.Acquire(ctx, ref)
	if err != nil || !c.IsSealing() {
		return c, release, err
	}
	if c, err = s.WaitSealed(ctx, c.ID); err != nil {
		release()
		return nil, nil, err
	}
	return c, release, nil
}

// Latest returns the newest checkpoint of a target, or NotFound.
func (s *Store) Latest(ctx context.Context, targetKey string) (*Checkpoint, error) {
	all, err := s.List(ctx, Filter{TargetKey: targetKey})
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("checkpoints of %s: %w", targetKey, errdefs.ErrNotFound)
	}
	return all[len(all)-1], nil
}

// NameTaken reports whether a checkpoint already has this name.
func (s *Store) NameTaken(ctx context.Context, name string) (bool, error) {
	var taken bool
	err := s.db.View(func(tx *bolt.Tx) error {
		taken = tx.Bucket(bucketNames).Get([]byte(name)) != nil
		return nil
	})
	if err != nil || taken {
		return taken, err
	}
	// Groups share the names of checkpoints: restore and rm take either.
	if _, err := s.GetGroup(ctx, name); !errdefs.IsNotFound(err) {
		return err == nil, err
	}
	return false, nil
}

func putTx(tx *bolt.Tx, c *Checkpoint) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCheckpoints).Put([]byte(c.ID), v)
}
