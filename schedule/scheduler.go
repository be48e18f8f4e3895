package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
)

// MinEvery is the shortest interval a policy may have.
const MinEvery = time.Second

// Policy is one target's schedule: a --leave-running checkpoint every
// Every, pruned by Retention.
type Policy struct {
	Target string `json:"target"` // as named: a PID, workload name or ctr:NS/ID
	Key    string `json:"key"`    // the target's key: one policy per target
	// Members are the targets of a group's schedule, checkpointed at one
	// instant as the group Target-N.
	Members []string      `json:"members,omitempty"`
	Every   time.Duration `json:"every"`
	Retention
	FromConfig bool `json:"from_config,omitempty"` // set again by every start from the config file
}

// Status is a policy and what its runs did; it survives restarts.
type Status struct {
	Policy
	LastRun        time.Time `json:"last_run"`
	LastCheckpoint string    `json:"last_checkpoint,omitempty"`
	Runs           int       `json:"runs"`
	Skipped        int       `json:"skipped"` // ticks that found the previous run still going
	Failures       int       `json:"failures"`
	LastError      string    `json:"last_error,omitempty"`
	Running        bool      `json:"-"`
}

// Store keeps policies across restarts; *store.Store is the real one.
type Store interface {
	PutSchedule(ctx context.Context, key string, v []byte) error
	Schedules(ctx context.Context) (map[string][]byte, error)
	DeleteSchedule(ctx context.Context, key string) error
}

// Checkpointer takes and prunes a target's scheduled checkpoints; the
// daemon is the real one.
type Checkpointer interface {
	// Snapshot takes a scheduled --leave-running checkpoint of the
	// policy's target, or of its members as a group, and returns its id
	// once sealed.
	Snapshot(ctx context.Context, p Policy) (string, error)
	// Candidates lists the target's scheduled checkpoints.
	Candidates(ctx context.Context, key string) ([]Candidate, error)
	// Prune removes checkpoints, keeping their children's lineage; one in
	// use is left for the next time. It returns what it removed.
	Prune(ctx context.Context, ids []string) ([]string, error)
}

// Scheduler runs every policy's ticks. Build it with New; Close stops it.
type Scheduler struct {
	log    *slog.Logger
	store  Store
	cp     Checkpointer
	events *events.Hub
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	st     Status
	quit   chan struct{}
	exited chan struct{} // closed when its loop, and any run of it, ended
}

// New loads the stored policies and starts them. A tick missed while ckptd
// was down runs once at start, not once per missed interval.
func New(ctx context.Context, log *slog.Logger, st Store, cp Checkpointer, hub *events.Hub) (*Scheduler, error) {
	s := &Scheduler{log: log, store: st, cp: cp, events: hub, entries: map[string]*entry{}}
	s.ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	stored, err := st.Schedules(ctx)
	if err != nil {
		return nil, fmt.Errorf("load schedules: %w", err)
	}
	for key, v := range stored {
		var status Status
		if err := json.Unmarshal(v, &status); err != nil {
			log.Error("unreadable schedule; left as it is", "target", key, "err", err)
			continue
		}
		s.mu.Lock()
		s.startLocked(status)
		s.mu.Unlock()
	}
	return s, nil
}

// Close stops every loop and waits for runs in flight.
func (s *Scheduler) Close() {
	s.stop()
	s.wg.Wait()
}

// Set adds or replaces the policy of p.Key, keeping the counts of the one
// it replaces.
func (s *Scheduler) Set(ctx context.Context, p Policy) (Status, error) {
	if err := p.validate(); err != nil {
		return Status{}, err
	}
	s.mu.Lock()
	st := Status{Policy: p}
	old := s.entries[p.Key]
	if old != nil {
		st = old.st
		st.Policy = p
	}
	if err := s.save(ctx, st); err != nil {
		s.mu.Unlock()
		return Status{}, err
	}
	if old != nil {
		close(old.quit)
	}
	s.startLocked(st)
	s.mu.Unlock()
	s.log.Info("schedule set", "target", p.Key, "every", p.Every, "keep_last", p.KeepLast,
		"keep_hourly", p.KeepHourly, "keep_daily", p.KeepDaily, "max_bytes", p.MaxBytes)
	return st, nil
}

func (p Policy) validate() error {
	switch {
	case p.Key == "":
		return fmt.Errorf("schedule without a target: %w", errdefs.ErrInvalidArgument)
	case p.Every < MinEvery:
		return fmt.Errorf("schedule of %s: --every %v is shorter than %v: %w", p.Key, p.Every, MinEvery, errdefs.ErrInvalidArgument)
	case p.KeepLast < 0 || p.KeepHourly < 0 || p.KeepDaily < 0 || p.MaxBytes < 0:
		return fmt.Errorf("schedule of %s: negative retention: %w", p.Key, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Remove ends the policy of key and returns once a checkpoint it was
// taking is done. Its checkpoints stay.
func (s *Scheduler) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	e := s.entries[key]
	if e == nil {
		s.mu.Unlock()
		return fmt.Errorf("schedule of %s: %w", key, errdefs.ErrNotFound)
	}
	if err := s.store.DeleteSchedule(ctx, key); err != nil {
		s.mu.Unlock()
		return err
	}
	close(e.quit)
	delete(s.entries, key)
	s.mu.Unlock()
	s.log.Info("schedule removed", "target", key)
	select {
	case <-e.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// List returns every policy with its status, by target key.
func (s *Scheduler) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Get returns the policy of key, if any.
func (s *Scheduler) Get(key string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		return e.st, true
	}
	return Status{}, false
}

func (s *Scheduler) startLocked(st Status) {
	e := &entry{st: st, quit: make(chan struct{}), exited: make(chan struct{})}
	s.entries[st.Key] = e
	s.wg.Add(1)
	go s.loop(e)
}

func (s *Scheduler) save(ctx context.Context, st Status) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.store.PutSchedule(ctx, st.Key, v)
}
