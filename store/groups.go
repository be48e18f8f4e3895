package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// Group is a checkpoint of several targets taken at one instant. Its
// members are ordinary checkpoints marked with its ID; this record,
// written only once every member is published, is what makes the group
// complete (Flink's global checkpoint meta file). Members without it are
// never listed and are removed at the next start.
type Group struct {
	FormatVersion int           `json:"format_version"`
	ID            string        `json:"id"`
	Name          string        `json:"name"`
	Created       time.Time     `json:"created"`
	Members       []GroupMember `json:"members"` // restored in this order
	// Frozen is how long the members were held: from the freeze until
	// they could run again (or, stopped, until the group was durable).
	Frozen time.Duration `json:"frozen_ns,omitempty"`
	// Scheduled is set on groups a schedule took; Schedule names it.
	Scheduled bool   `json:"scheduled,omitempty"`
	Schedule  string `json:"schedule,omitempty"`
}

// GroupMember is one member's checkpoint and what it was taken of.
type GroupMember struct {
	Checkpoint string    `json:"checkpoint"`
	Name       string    `json:"name"` // the checkpoint's
	Target     TargetRef `json:"target"`
	// Host is the peer address of the ckptd that keeps this member, for a
	// group across hosts; empty for this host's.
	Host string `json:"host,omitempty"`
}

// Has reports whether g names ref, its ID or its name.
func (g *Group) Has(ref string) bool { return ref == g.ID || ref == g.Name }

// PutGroup writes g's record durably: the group is complete once it
// returns. Every member must be published before.
func (s *Store) PutGroup(ctx context.Context, g *Group) error {
	for _, m := range g.Members {
		if m.Host != "" {
			continue // another host's
		}
		c, err := s.Get(ctx, m.Checkpoint)
		if err != nil {
			return fmt.Errorf("group %s: member %s: %w", g.Name, m.Checkpoint, err)
		}
		if c.Group != g.ID {
			return fmt.Errorf("group %s: checkpoint %s is not its member: %w", g.Name, c.ID, errdefs.ErrFailedPrecondition)
		}
	}
	g.FormatVersion = FormatVersion
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.layout.Group(g.ID), data); err != nil {
		return fmt.Errorf("write group record: %w", err)
	}
	return nil
}

// Groups lists the complete groups, oldest first.
func (s *Store) Groups(ctx context.Context) ([]*Group, error) {
	paths, err := filepath.Glob(filepath.Join(s.layout.GroupsDir(), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Group
	for _, p := range paths {
		g, err := readGroup(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since the glob: a retention or an rm
		}
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// GetGroup finds a complete group by ID or name.
func (s *Store) GetGroup(ctx context.Context, ref string) (*Group, error) {
	if ref == "" || strings.ContainsAny(ref, "/\x00") {
		return nil, fmt.Errorf("group %q: %w", ref, errdefs.ErrNotFound)
	}
	if g, err := readGroup(s.layout.Group(ref)); err == nil {
		return g, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	all, err := s.Groups(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range all {
		if g.Name == ref {
			return g, nil
		}
	}
	return nil, fmt.Errorf("group %q: %w", ref, errdefs.ErrNotFound)
}

// DropGroupRecord removes g's record alone: a group across hosts whose
// other hosts could not commit. The caller removes its members.
func (s *Store) DropGroupRecord(g *Group) error {
	if err := os.Remove(s.layout.Group(g.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove group %s: %w", g.Name, err)
	}
	return syncDir(s.layout.GroupsDir())
}

// GroupComplete reports whether the group id has its record.
func (s *Store) GroupComplete(id string) bool {
	_, err := os.Stat(s.layout.Group(id))
	return err == nil
}

// RemoveGroup removes g: its record first, so that a crash midway leaves
// members of no group, which the next start removes, then its members.
func (s *Store) RemoveGroup(ctx context.Context, g *Group) ([]string, error) {
	s.mu.Lock()
	for _, m := range g.Members {
		if s.busy[m.Checkpoint] > 0 {
			s.mu.Unlock()
			return nil, fmt.Errorf("group %s: its checkpoint %s is in use (a restore, an inspect, its seal): %w", g.Name, m.Name, errdefs.ErrFailedPrecondition)
		}
	}
	s.mu.Unlock()
	if err := os.Remove(s.layout.Group(g.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove group %s: %w", g.Name, err)
	}
	if err := syncDir(s.layout.GroupsDir()); err != nil {
		return nil, err
	}
	return s.removeMembers(ctx, g.ID)
}

// removeMembers removes the checkpoints marked as members of group id.
func (s *Store) removeMembers(ctx context.Context, id string) ([]string, error) {
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, c := range all {
		if c.Group == id {
			refs = append(refs, c.ID)
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	return s.Remove(ctx, refs, false)
}

// Unpublish takes back a checkpoint published but not yet sealed, whose
// target was not released: a member of a group that failed.
func (s *Store) Unpublish(ctx context.Context, id string) error {
	s.mu.Lock()
	job := s.sealing[id]
	s.mu.Unlock()
	if job == nil {
		return fmt.Errorf("unpublish %s: not sealing: %w", id, errdefs.ErrFailedPrecondition)
	}
	s.endSealing(id, job, errors.New("taken back: its group failed"))
	if err := s.dropUnsealed(id); err != nil {
		return fmt.Errorf("unpublish %s: %w", id, err)
	}
	return nil
}

// dropIncompleteGroups removes members of groups that never got their
// record: ckptd stopped during the group's checkpoint.
func (s *Store) dropIncompleteGroups(ctx context.Context) error {
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return err
	}
	dropped := map[string]bool{}
	for _, c := range all {
		if c.Group == "" || dropped[c.Group] || s.GroupComplete(c.Group) {
			continue
		}
		dropped[c.Group] = true
		ids, err := s.removeMembers(ctx, c.Group)
		if err != nil {
			return fmt.Errorf("remove the members of incomplete group %s: %w", c.Group, err)
		}
		s.log.Warn("removed the members of a group checkpoint that did not complete", "group", c.Group, "checkpoints", ids)
	}
	return nil
}

func readGroup(path string) (*Group, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var g Group
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("group record %s: %w", path, err)
	}
	if g.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("group record %s: format %d is newer than this ckptd's (%d): %w", path, g.FormatVersion, FormatVersion, errdefs.ErrFailedPrecondition)
	}
	return &g, nil
}
