package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/store"
)

// remoteTargets sorts HOST:PORT:TARGET names by host; workload names and
// PIDs have no colon.
func remoteTargets(targets []string) map[string][]string {
	hosts := map[string][]string{}
	for _, t := range targets {
		if i := strings.LastIndexByte(t, ':'); i > 0 && !container.IsRef(t) {
			hosts[t[:i]] = append(hosts[t[:i]], t[i+1:])
		}
	}
	return hosts
}

// groupPeer is one participant host of a group this ckptd coordinates.
type groupPeer struct {
	addr    string
	c       *migrate.Conn
	targets []string
	members []migrate.GroupMember
	beat    func()
}

// createAcross coordinates a group whose members are on several hosts:
// every phase goes to every host, and the next starts only once all have
// answered (each within the peer timeout); anything else aborts them all.
func (d *Daemon) createAcross(ctx context.Context, g *store.Group, req GroupRequest, hosts map[string][]string) (*store.Group, error) {
	if d.peer == nil {
		return nil, fmt.Errorf("group %s: members on other hosts need the peer link (peer_certs): %w", g.Name, errdefs.ErrFailedPrecondition)
	}
	var peers []*groupPeer
	defer func() {
		for _, p := range peers {
			p.beat()
			p.c.Close()
		}
	}()
	for _, addr := range slices.Sorted(maps.Keys(hosts)) {
		c, err := migrate.DialGroup(ctx, addr, d.peer, d.peerIdle)
		if err != nil {
			abortPeers(peers)
			return nil, d.groupFailed(g, err)
		}
		p := &groupPeer{addr: addr, c: c, targets: hosts[addr], beat: c.Beat()}
		peers = append(peers, p)
	}
	var local []string
	for _, t := range req.Targets {
		if len(remoteTargets([]string{t})) == 0 {
			local = append(local, t)
		}
	}
	req.Targets = local
	r, err := d.coordinate(ctx, g, req, peers)
	if err != nil {
		abortPeers(peers)
		if r != nil {
			err = errors.Join(err, r.abort())
		}
		return nil, d.groupFailed(g, err)
	}
	return d.commitAcross(g, r, peers)
}

// coordinate runs prepare, freeze and dump on every host, this one too.
func (d *Daemon) coordinate(ctx context.Context, g *store.Group, req GroupRequest, peers []*groupPeer) (*groupRun, error) {
	for _, p := range peers {
		step := &migrate.GroupStep{ID: g.ID, Name: g.Name, Targets: p.targets, LeaveRunning: req.Options.LeaveRunning,
			TCPEstablished: req.Options.TCPEstablished, FileLocks: req.Options.FileLocks, PrepareTimeout: int64(req.PrepareTimeout)}
		if err := p.c.Send(&migrate.Message{Kind: migrate.KindGroupPrepare, Group: step}); err != nil {
			return nil, fmt.Errorf("%s: %w", p.addr, err)
		}
	}
	var r *groupRun
	if len(req.Targets) > 0 {
		var err error
		if r, err = d.beginGroup(ctx, g, req); err != nil {
			return nil, err
		}
	}
	if err := awaitPeers(peers, migrate.KindGroupPrepared); err != nil {
		return r, err
	}
	if err := stepPeers(g, peers, migrate.KindGroupFreeze); err != nil {
		return r, err
	}
	if r != nil {
		if err := r.freeze(ctx); err != nil {
			return r, err
		}
	}
	if err := awaitPeers(peers, migrate.KindGroupFrozen); err != nil {
		return r, err
	}
	if err := stepPeers(g, peers, migrate.KindGroupDump); err != nil {
		return r, err
	}
	if r != nil {
		if err := r.dump(); err != nil {
			return r, err
		}
	}
	return r, awaitPeers(peers, migrate.KindGroupDumped)
}

// commitAcross commits every other host first, then this one, then
// releases them all. A host that cannot commit takes the others back.
func (d *Daemon) commitAcross(g *store.Group, r *groupRun, peers []*groupPeer) (*store.Group, error) {
	var all []migrate.GroupMember
	for _, p := range peers {
		for _, m := range p.members {
			m.Host = p.addr
			all = append(all, m)
		}
	}
	if r != nil {
		for _, m := range r.ms {
			all = append(all, migrate.GroupMember{Checkpoint: m.c.ID, Name: m.c.Name, Target: refName(m.c.Target)})
		}
	}
	for _, p := range peers {
		step := &migrate.GroupStep{ID: g.ID, Name: g.Name, Members: all}
		if err := p.c.Send(&migrate.Message{Kind: migrate.KindGroupCommit, Group: step}); err != nil {
			return nil, d.abortAcross(g, r, peers, fmt.Errorf("%s: %w", p.addr, err))
		}
	}
	if err := awaitPeers(peers, migrate.KindGroupCommitted); err != nil {
		return nil, d.abortAcross(g, r, peers, err)
	}
	var others []store.GroupMember
	for _, p := range peers {
		for _, m := range p.members {
			others = append(others, store.GroupMember{Host: p.addr, Checkpoint: m.Checkpoint, Name: m.Name, Target: remoteRef(m.Target)})
		}
	}
	var err error
	if r != nil {
		err = r.commit(others)
	} else {
		g.Members = others
		err = d.store.PutGroup(context.Background(), g)
	}
	if err != nil {
		abortPeers(peers)
		return nil, d.groupFailed(g, err)
	}
	if err := stepPeers(g, peers, migrate.KindGroupRelease); err != nil {
		d.log.Warn("a host of a complete group did not hear its release; it releases on its own", "group", g.Name, "err", err)
	}
	if r != nil {
		err = r.release()
	}
	if werr := awaitPeers(peers, migrate.KindGroupReleased); werr != nil {
		d.log.Warn("a host of a complete group did not confirm its release", "group", g.Name, "err", werr)
	}
	d.groupCreated(g)
	if err != nil {
		return g, d.groupFailed(g, err)
	}
	return g, nil
}

func (d *Daemon) abortAcross(g *store.Group, r *groupRun, peers []*groupPeer, err error) error {
	abortPeers(peers)
	if r != nil {
		err = errors.Join(err, r.abort())
	}
	return d.groupFailed(g, err)
}

// stepPeers sends every host the next phase.
func stepPeers(g *store.Group, peers []*groupPeer, kind string) error {
	for _, p := range peers {
		if err := p.c.Send(&migrate.Message{Kind: kind, Group: &migrate.GroupStep{ID: g.ID, Name: g.Name}}); err != nil {
			return fmt.Errorf("%s: %w", p.addr, err)
		}
	}
	return nil
}

// awaitPeers waits for every host's answer of kind; a host that stays
// quiet for the peer timeout fails it.
func awaitPeers(peers []*groupPeer, kind string) error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			m, err := p.c.Recv(kind)
			if err == nil {
				err = migrate.ValidateGroupStep(kind, m.Group)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", p.addr, err)
				return
			}
			if kind == migrate.KindGroupDumped {
				p.members = m.Group.Members
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// abortPeers tells every host to roll back, as far as it can be told.
func abortPeers(peers []*groupPeer) {
	for _, p := range peers {
		p.c.Send(&migrate.Message{Kind: migrate.KindGroupAbort}) // a host that does not hear it aborts on its peer timeout
	}
}

// remoteRef is what a record keeps of another host's member.
func remoteRef(target string) store.TargetRef {
	if pid, err := strconv.Atoi(target); err == nil {
		return store.TargetRef{Kind: store.KindProcess, PID: pid}
	}
	return store.TargetRef{Kind: store.KindWorkload, Name: target}
}
