package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// Persisted is a target that outlives a reboot (run --persist, ckptctl
// persist): a shutdown checkpoints and stops it, and the next start
// restores it. Kept apart from the target's record, which every restore
// writes anew.
type Persisted struct {
	Target TargetRef `json:"target"`
	Since  time.Time `json:"since"` // restored at start in this order
	// Group names the targets checkpointed with it as one group (one
	// freeze) at a shutdown, and restored with it, all or none.
	Group string `json:"group,omitempty"`
	// Checkpoint is what the last shutdown took of it, in boot Boot; the
	// next start restores it and clears it.
	Checkpoint string `json:"checkpoint,omitempty"`
	Boot       string `json:"boot,omitempty"`
	// ShutdownGroup is the group checkpoint Checkpoint is a member of.
	ShutdownGroup string `json:"shutdown_group,omitempty"`
	// Error is why the shutdown's checkpoint or the start's restore
	// failed; a failed restore keeps Checkpoint.
	Error string `json:"error,omitempty"`
}

// Persisted lists the persisted targets, in the order they were marked.
func (s *Store) Persisted(ctx context.Context) ([]Persisted, error) {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	m, err := s.readPersisted()
	if err != nil {
		return nil, err
	}
	out := make([]Persisted, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// PutPersisted records ps in one write, each replacing the entry of its
// target.
func (s *Store) PutPersisted(ctx context.Context, ps ...Persisted) error {
	return s.editPersisted(func(m map[string]Persisted) {
		for _, p := range ps {
			m[p.Target.Key()] = p
		}
	})
}

// Persist marks ref as persisted, in group, from now on; one marked
// already keeps its place in the order.
func (s *Store) Persist(ctx context.Context, ref TargetRef, group string) (Persisted, error) {
	p := Persisted{Target: ref, Group: group, Since: time.Now().UTC()}
	err := s.editPersisted(func(m map[string]Persisted) {
		if cur, ok := m[ref.Key()]; ok {
			p.Since = cur.Since
		}
		m[ref.Key()] = p
	})
	return p, err
}

// Unpersist forgets the target key: it no longer outlives a reboot.
func (s *Store) Unpersist(ctx context.Context, key string) error {
	return s.editPersisted(func(m map[string]Persisted) { delete(m, key) })
}

// Boot is the boot id this store was opened in.
func (s *Store) Boot() string { return s.bootID }

func (s *Store) editPersisted(edit func(map[string]Persisted)) error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	m, err := s.readPersisted()
	if err != nil {
		return err
	}
	edit(m)
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.layout.PersistedFile(), data); err != nil {
		return fmt.Errorf("write persisted targets: %w", err)
	}
	return nil
}

func (s *Store) readPersisted() (map[string]Persisted, error) {
	m := map[string]Persisted{}
	data, err := os.ReadFile(s.layout.PersistedFile())
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("persisted targets %s: %w", s.layout.PersistedFile(), err)
	}
	return m, nil
}
