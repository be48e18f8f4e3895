package daemon

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Groups lists the complete group checkpoints the caller owns.
func (d *Daemon) Groups(ctx context.Context) ([]*store.Group, error) {
	all, err := d.store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, g := range all {
		if ownsGroup(ctx, g) == nil {
			out = append(out, g)
		}
	}
	return out, nil
}

// Group finds a complete group checkpoint by name or ID.
func (d *Daemon) Group(ctx context.Context, ref string) (*store.Group, error) {
	g, err := d.store.GetGroup(ctx, ref)
	if err != nil {
		return nil, err
	}
	return g, ownsGroup(ctx, g)
}

func ownsGroup(ctx context.Context, g *store.Group) error {
	caller := access.From(ctx)
	for _, m := range g.Members {
		if !caller.Owns(m.Target.Owner) {
			return fmt.Errorf("group %s holds %s, which is not yours: %w", g.Name, m.Target, errdefs.ErrPermissionDenied)
		}
	}
	return nil
}

// listed says whether c may be listed: a member counts only once its
// group is complete.
func (d *Daemon) listed(c *store.Checkpoint) bool {
	return c.Group == "" || d.store.GroupComplete(c.Group)
}

// removeGroups removes the groups refs name, with their members, and
// returns the refs that name no group.
func (d *Daemon) removeGroups(ctx context.Context, refs []string) (rest, removed []string, err error) {
	for _, ref := range refs {
		g, gerr := d.Group(ctx, ref)
		if errdefs.IsNotFound(gerr) {
			if c, err := d.store.Get(ctx, ref); err == nil && c.Group != "" && d.store.GroupComplete(c.Group) {
				return nil, removed, fmt.Errorf("checkpoint %s is a member of a group: remove the group: %w", c.Name, errdefs.ErrFailedPrecondition)
			}
			rest = append(rest, ref)
			continue
		}
		if gerr != nil {
			return nil, removed, gerr
		}
		ids, err := d.store.RemoveGroup(ctx, g)
		removed = append(removed, ids...)
		if err != nil {
			return nil, removed, err
		}
		d.log.Info("group removed", "group", g.Name, "checkpoints", ids)
		d.events.Publish(events.Event{Kind: events.Removed, Checkpoint: g.ID, Name: g.Name})
	}
	return rest, removed, nil
}

// RestoreGroup restores every member of a group, in its order, or none:
// a member that fails ends those restored before it. With suffix, each
// member is restored as a copy named after its target and suffix, in a
// network namespace of its own; the copies' connections to one another
// are restored closed, since their addresses are new.
func (d *Daemon) RestoreGroup(ctx context.Context, ref, suffix string) ([]*TargetStatus, error) {
	g, err := d.Group(ctx, ref)
	if err != nil {
		return nil, err
	}
	var restored []*TargetStatus
	var elsewhere []string
	for _, m := range g.Members {
		if m.Host != "" {
			elsewhere = append(elsewhere, m.Host)
			continue
		}
		req := RestoreRequest{Checkpoint: m.Checkpoint}
		if suffix != "" {
			req.Name = copyName(m.Target, suffix)
			c, err := d.store.Get(ctx, m.Checkpoint)
			if err != nil {
				return nil, d.undoGroupRestore(ctx, g, restored, err)
			}
			req.TCPClose = c.Options.TCPEstablished && c.Network != nil
		}
		s, err := d.Restore(ctx, req)
		if err != nil {
			return nil, d.undoGroupRestore(ctx, g, restored, err)
		}
		if req.TCPClose {
			s.Warnings = append(s.Warnings, "its connections were restored closed: a copy has a new address")
		}
		restored = append(restored, s)
	}
	if len(elsewhere) > 0 && len(restored) > 0 {
		restored[0].Warnings = append(restored[0].Warnings, fmt.Sprintf("the group's members on %s are restored there, by the same command", strings.Join(slices.Compact(slices.Sorted(slices.Values(elsewhere))), ", ")))
	}
	if len(restored) == 0 {
		return nil, fmt.Errorf("group %s has no member on this host: restore it on %s: %w", g.Name, strings.Join(elsewhere, ", "), errdefs.ErrFailedPrecondition)
	}
	d.log.Info("group restored", "group", g.Name, "members", len(restored), "copies", suffix != "")
	return restored, nil
}

// undoGroupRestore ends the members a failed group restore brought back.
func (d *Daemon) undoGroupRestore(ctx context.Context, g *store.Group, restored []*TargetStatus, err error) error {
	for _, s := range restored {
		if kerr := proc.Signal(s.PID, s.StartTime, unix.SIGKILL); kerr != nil && !errors.Is(kerr, proc.ErrGone) {
			err = errors.Join(err, fmt.Errorf("end %s: %w", s.TargetRef, kerr))
		}
	}
	if len(restored) > 0 {
		err = fmt.Errorf("%w (the %d members restored before it were ended)", err, len(restored))
	}
	return fmt.Errorf("restore group %s: %w", g.Name, err)
}

// copyName names a member's copy: its target's name and the suffix.
func copyName(t store.TargetRef, suffix string) string {
	base := t.Name
	switch t.Kind {
	case store.KindProcess:
		base = "pid" + strconv.Itoa(t.PID)
	case store.KindContainer:
		base = path.Base(t.Name)
	}
	return base + "-" + suffix
}
