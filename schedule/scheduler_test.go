package schedule

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ckptd/ckptd/events"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memStore is the scheduler's Store in memory.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) PutSchedule(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}

func (s *memStore) Schedules(context.Context) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.m {
		out[k] = v
	}
	return out, nil
}

func (s *memStore) DeleteSchedule(_ context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

// counter is a Checkpointer that records snapshots, each taking hold.
type counter struct {
	mu     sync.Mutex
	hold   time.Duration
	taken  []Candidate
	pruned []string
}

func (c *counter) Snapshot(ctx context.Context, _ Policy) (string, error) {
	time.Sleep(c.hold)
	c.mu.Lock()
	defer c.mu.Unlock()
	id := fmt.Sprintf("c%d", len(c.taken))
	c.taken = append(c.taken, Candidate{ID: id, Created: time.Now(), Size: 1, Sealed: true})
	return id, nil
}

func (c *counter) Candidates(context.Context, string) ([]Candidate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Candidate
	for _, t := range c.taken {
		if !contains(c.pruned, t.ID) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (c *counter) Prune(_ context.Context, ids []string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruned = append(c.pruned, ids...)
	return ids, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Ticks fire, retention prunes after each run, and a tick that finds the
// previous run still going is skipped and counted.
func TestTicksRetentionAndSkips(t *testing.T) {
	st := &memStore{m: map[string][]byte{}}
	cp := &counter{hold: 1500 * time.Millisecond}
	s, err := New(context.Background(), quiet, st, cp, events.NewHub())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Set(context.Background(), Policy{Target: "job", Key: "workload/job", Every: time.Second, Retention: Retention{KeepLast: 1}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "two runs and a skip", func() bool {
		got, _ := s.Get("workload/job")
		return got.Runs >= 2 && got.Skipped >= 1
	})
	cands, _ := cp.Candidates(context.Background(), "")
	if len(cands) > 2 { // the newest, and one taken since the last prune
		t.Errorf("retention keep-last 1 left %d checkpoints", len(cands))
	}
}

// After downtime, the missed tick runs once at start, not once per missed
// interval; a removed schedule stays removed.
func TestMissedTickRunsOnce(t *testing.T) {
	st := &memStore{m: map[string][]byte{}}
	old := Status{Policy: Policy{Target: "job", Key: "workload/job", Every: time.Hour}, LastRun: time.Now().Add(-5 * time.Hour)}
	s := &Scheduler{store: st}
	if err := s.save(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	cp := &counter{}
	s, err := New(context.Background(), quiet, st, cp, events.NewHub())
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the missed tick", func() bool { got, _ := s.Get("workload/job"); return got.Runs == 1 })
	time.Sleep(200 * time.Millisecond)
	if got, _ := s.Get("workload/job"); got.Runs != 1 {
		t.Errorf("%d runs after 5 missed hours, want 1", got.Runs)
	}
	if err := s.Remove(context.Background(), "workload/job"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if left, _ := st.Schedules(context.Background()); len(left) != 0 {
		t.Errorf("removed schedule still stored: %v", left)
	}
}

func TestPolicyValidation(t *testing.T) {
	s, err := New(context.Background(), quiet, &memStore{m: map[string][]byte{}}, &counter{}, events.NewHub())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []Policy{
		{Key: "", Every: time.Minute},
		{Key: "workload/x", Every: time.Millisecond},
		{Key: "workload/x", Every: time.Minute, Retention: Retention{KeepLast: -1}},
	} {
		if _, err := s.Set(context.Background(), p); err == nil {
			t.Errorf("policy %+v accepted", p)
		}
	}
}
