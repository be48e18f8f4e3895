package daemon

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/ckptd/ckptd/access"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Who may do what is package access's; these apply it to ckptd's
// targets and checkpoints. What a caller does not own is, to it, not
// there: the same error as a name never used.

// ownTarget refuses a target the caller does not own.
func ownTarget(ctx context.Context, ref store.TargetRef, what string) error {
	if access.From(ctx).Owns(ref.Owner) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, errdefs.ErrNotFound)
}

// ownCheckpoint refuses a checkpoint the caller does not own.
func ownCheckpoint(ctx context.Context, c *store.Checkpoint, ref string) error {
	if access.From(ctx).Owns(c.Target.Owner) {
		return nil
	}
	return fmt.Errorf("checkpoint %q: %w", ref, errdefs.ErrNotFound)
}

// ownedCheckpoints is cs without what the caller does not own.
func ownedCheckpoints(ctx context.Context, cs []*store.Checkpoint) []*store.Checkpoint {
	caller := access.From(ctx)
	if caller.IsRoot() {
		return cs
	}
	out := cs[:0:0]
	for _, c := range cs {
		if caller.Owns(c.Target.Owner) {
			out = append(out, c)
		}
	}
	return out
}

// processOwner is the owner a new process target gets: the caller, who
// must be the user its whole tree runs as unless it is root.
func processOwner(ctx context.Context, pid int) (uint32, error) {
	caller := access.From(ctx)
	if caller.IsRoot() {
		return 0, nil
	}
	if uid, _, ok := proc.TreeOwner(pid); !ok || uint32(uid) != caller.UID {
		return 0, fmt.Errorf("process %d (or one of its tree) is not yours, uid %d: %w", pid, caller.UID, errdefs.ErrPermissionDenied)
	}
	return caller.UID, nil
}

// acquire holds the checkpoint ref names (sealed: only a sealed one)
// against rm, if the caller owns it. The caller releases.
func (d *Daemon) acquire(ctx context.Context, ref string, sealed bool) (*store.Checkpoint, func(), error) {
	get := d.store.Acquire
	if sealed {
		get = d.store.AcquireSealed
	}
	c, release, err := get(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	if err := ownCheckpoint(ctx, c, ref); err != nil {
		release()
		return nil, nil, err
	}
	return c, release, nil
}

// ownAll refuses refs unless the caller owns every checkpoint they name.
func (d *Daemon) ownAll(ctx context.Context, refs []string) error {
	if access.From(ctx).IsRoot() {
		return nil
	}
	for _, ref := range refs {
		c, err := d.store.Get(ctx, ref)
		if err != nil {
			return err
		}
		if err := ownCheckpoint(ctx, c, ref); err != nil {
			return err
		}
	}
	return nil
}

// runAs is whom a workload runs as (nil: root). A caller who is not root
// runs its workloads as itself, and may name only itself.
func runAs(ctx context.Context, user string) (*syscall.Credential, error) {
	caller := access.From(ctx)
	if user == "" && caller.IsRoot() {
		return nil, nil
	}
	if user == "" {
		return &syscall.Credential{Uid: caller.UID, Gid: caller.GID, Groups: []uint32{}}, nil
	}
	uid, gid, err := lookupUser(user)
	if err != nil {
		return nil, err
	}
	if !caller.Owns(uid) {
		return nil, fmt.Errorf("run --user %s: you are uid %d, and run as yourself: %w", user, caller.UID, errdefs.ErrPermissionDenied)
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, nil
}

// lookupUser reads UID[:GID], or a user name (with its primary group).
func lookupUser(s string) (uid, gid uint32, err error) {
	name, group, hasGroup := strings.Cut(s, ":")
	u, err := strconv.ParseUint(name, 10, 32)
	g := u // without a passwd entry, a group of its own number
	if err == nil {
		if pw, lerr := user.LookupId(name); lerr == nil {
			g, _ = strconv.ParseUint(pw.Gid, 10, 32)
		}
	} else {
		pw, lerr := user.Lookup(name)
		if lerr != nil {
			return 0, 0, fmt.Errorf("user %q: %w: %w", name, lerr, errdefs.ErrInvalidArgument)
		}
		u, _ = strconv.ParseUint(pw.Uid, 10, 32)
		g, _ = strconv.ParseUint(pw.Gid, 10, 32)
	}
	if hasGroup {
		if g, err = strconv.ParseUint(group, 10, 32); err != nil {
			gr, lerr := user.LookupGroup(group)
			if lerr != nil {
				return 0, 0, fmt.Errorf("group %q: %w: %w", group, lerr, errdefs.ErrInvalidArgument)
			}
			g, _ = strconv.ParseUint(gr.Gid, 10, 32)
		}
	}
	return uint32(u), uint32(g), nil
}

// runsAsOwner refuses a checkpoint of a target that is not root's while a
// task of its tree runs as another user (a setuid program): its owner
// could restore that task, again and again.
func runsAsOwner(t *store.Target) error {
	if t.Owner == 0 {
		return nil
	}
	if uid, _, ok := proc.TreeOwner(t.PID); !ok || uint32(uid) != t.Owner {
		return fmt.Errorf("%s is uid %d's, and a task of its tree runs as another user: only root's targets may hold other users' tasks: %w",
			t.TargetRef, t.Owner, errdefs.ErrPermissionDenied)
	}
	return nil
}

// callersPID is the process the caller names pid, read in the caller's
// PID namespace: from a container, 1 is its own init, not the host's.
func callersPID(ctx context.Context, pid int) (int, error) {
	caller := access.From(ctx)
	if caller.PID == 0 {
		return pid, nil
	}
	host, err := proc.HostPID(caller.PID, pid)
	if errors.Is(err, proc.ErrNotInNamespace) {
		return 0, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return host, nil
}
