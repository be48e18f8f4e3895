package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/store"
)

// errGroupAborted is the coordinator calling the group off.
var errGroupAborted = errors.New("the coordinating host aborted the group")

// ServeGroup runs this host's part of a group checkpoint another ckptd
// coordinates, one phase per message. Before the commit, anything but the
// next phase (an abort, an error, a coordinator quiet for the peer
// timeout) rolls this host's part back: its members run as before. After
// it, the group is complete here: a release that never comes is done on
// this host's own, an abort takes the commit back.
func (d *Daemon) ServeGroup(ctx context.Context, c *migrate.Conn) error {
	defer c.Beat()()
	m, err := c.Recv(migrate.KindGroupPrepare)
	if err == nil {
		err = migrate.ValidateGroupStep(m.Kind, m.Group)
	}
	if err != nil {
		c.SendError(err)
		return err
	}
	step := m.Group
	g := &store.Group{ID: step.ID, Name: step.Name}
	r, err := d.participate(ctx, c, g, step)
	if err != nil {
		if r != nil {
			err = errors.Join(err, r.abort())
		}
		c.SendError(err)
		return d.groupFailed(g, err)
	}
	for _, x := range r.ms {
		step.Members = append(step.Members, migrate.GroupMember{Checkpoint: x.c.ID, Name: x.c.Name, Target: refName(x.c.Target)})
	}
	if err := c.Send(&migrate.Message{Kind: migrate.KindGroupDumped, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name, Members: step.Members}}); err != nil {
		return d.groupFailed(g, errors.Join(err, r.abort()))
	}
	m, err = nextStep(c, migrate.KindGroupCommit)
	if err != nil {
		return d.groupFailed(g, errors.Join(err, r.abort()))
	}
	if err := r.commit(othersOf(c, r, m.Group.Members)); err != nil {
		c.SendError(err)
		return d.groupFailed(g, err)
	}
	if err := c.Send(&migrate.Message{Kind: migrate.KindGroupCommitted, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name}}); err != nil {
		d.log.Warn("the coordinator of a group did not hear this host commit", "group", g.Name, "err", err)
	}
	_, err = nextStep(c, migrate.KindGroupRelease)
	if errors.Is(err, errGroupAborted) {
		return d.groupFailed(g, errors.Join(err, r.uncommit()))
	}
	if err != nil {
		d.log.Warn("the coordinator of a complete group went quiet; releasing its members here", "group", g.Name, "err", err)
	}
	rerr := r.release()
	d.groupCreated(g)
	c.Send(&migrate.Message{Kind: migrate.KindGroupReleased, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name}})
	return rerr
}

// participate takes this host's targets through prepare, freeze and
// dump, each on the coordinator's word.
func (d *Daemon) participate(ctx context.Context, c *migrate.Conn, g *store.Group, step *migrate.GroupStep) (*groupRun, error) {
	if d.freezer == nil {
		return nil, fmt.Errorf("group checkpoints need the cgroup freezer: %w", d.freezerErr)
	}
	if err := d.groupName(ctx, g.Name); err != nil {
		return nil, err
	}
	if len(step.Targets) == 0 {
		return nil, fmt.Errorf("no targets on this host: %w", errdefs.ErrInvalidArgument)
	}
	// A peer names this host's workloads only: what ckptd runs, never
	// any process of the host.
	for _, t := range step.Targets {
		if _, err := strconv.Atoi(t); err == nil {
			return nil, fmt.Errorf("%s: a peer's group takes this host's workloads, not its processes: %w", t, errdefs.ErrPermissionDenied)
		}
	}
	// What to dump comes from an allow-list: a peer sets no CRIU
	// configuration, no hook, nothing else.
	req := GroupRequest{Name: g.Name, Targets: step.Targets, PrepareTimeout: time.Duration(step.PrepareTimeout),
		Options: store.Options{LeaveRunning: step.LeaveRunning, TCPEstablished: step.TCPEstablished, FileLocks: step.FileLocks,
			LinkRemap: d.defaults.LinkRemap, GhostLimit: d.defaults.GhostLimit}}
	r, err := d.beginGroup(ctx, g, req)
	if err != nil {
		return nil, err
	}
	if err := c.Send(&migrate.Message{Kind: migrate.KindGroupPrepared, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name}}); err != nil {
		return r, err
	}
	if _, err := nextStep(c, migrate.KindGroupFreeze); err != nil {
		return r, err
	}
	if err := r.freeze(ctx); err != nil {
		return r, err
	}
	if err := c.Send(&migrate.Message{Kind: migrate.KindGroupFrozen, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name}}); err != nil {
		return r, err
	}
	if _, err := nextStep(c, migrate.KindGroupDump); err != nil {
		return r, err
	}
	return r, r.dump()
}

// nextStep reads the coordinator's next message, which must be want or
// an abort.
func nextStep(c *migrate.Conn, want string) (*migrate.Message, error) {
	m, err := c.Next()
	switch {
	case err != nil:
		return nil, err
	case m.Kind == migrate.KindGroupAbort:
		return nil, errGroupAborted
	case m.Kind != want:
		return nil, fmt.Errorf("protocol: got %q, want %q", m.Kind, want)
	}
	if err := migrate.ValidateGroupStep(m.Kind, m.Group); err != nil {
		return nil, err
	}
	return m, nil
}

// othersOf is every member of the group but this host's, as the record
// here keeps them: the coordinator's own named after its certificate.
func othersOf(c *migrate.Conn, r *groupRun, all []migrate.GroupMember) []store.GroupMember {
	mine := map[string]bool{}
	for _, m := range r.ms {
		mine[m.c.ID] = true
	}
	var out []store.GroupMember
	for _, m := range all {
		if mine[m.Checkpoint] {
			continue
		}
		host := m.Host
		if host == "" {
			host = c.Peer()
		}
		out = append(out, store.GroupMember{Host: host, Checkpoint: m.Checkpoint, Name: m.Name, Target: remoteRef(m.Target)})
	}
	return out
}
