package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

// A workload's own network namespace is external to its checkpoints (as
// runc does for containers joined to a namespace): CRIU keeps only a key
// for it, not its links, addresses or rules, which belong to ckptd's
// network. A restore makes a new namespace, wires it, and hands it to
// CRIU under that key.

// withNetwork marks the namespace of a, when there is one, external to
// the dump.
func withNetwork(o dumper.Options, a *network.Attachment) (dumper.Options, error) {
	if a == nil {
		return o, nil
	}
	key, err := network.External(a.NetNS)
	if err != nil {
		return o, err
	}
	o.External = append(o.External, key)
	return o, nil
}

// releaseHold lets traffic reach a namespace held during a restore or a
// dump again; a failure is logged: the workload runs, unreachable.
func (d *Daemon) releaseHold(ref store.TargetRef, nsPath string) {
	if err := network.Release(nsPath); err != nil {
		d.log.Error("let traffic reach a workload's network again", "target", ref.Key(), "err", err)
	}
}

// holdForDump holds t's carrier while its established connections are
// dumped (tcp). The function it returns lets traffic in again, unless the
// dump ended the workload: its namespace goes with it, and until then a
// peer's retransmission must not meet a namespace with no socket, which
// would reset it.
func (d *Daemon) holdForDump(t *store.Target, tcp bool) (done func(ended bool), err error) {
	if t.Network == nil || !tcp {
		return func(bool) {}, nil
	}
	if err := network.Hold(t.Network.NetNS); err != nil {
		return nil, fmt.Errorf("hold the network of %s while its connections are dumped: %w", t.Name, err)
	}
	return func(ended bool) {
		if !ended {
			d.releaseHold(t.TargetRef, t.Network.NetNS)
		}
	}, nil
}

// networkSpec is what a checkpoint keeps of a's network.
func networkSpec(a *network.Attachment) *network.Spec {
	if a == nil {
		return nil
	}
	s := a.Spec()
	return &s
}

// restoreNetwork makes the namespace a restore of c as ref goes into:
// at c's address with c's ports in place, or for a copy a new address
// with the ports asked for, or the one it kept while it slept. The caller hands ns to CRIU, then closes it,
// and calls undo if the restore fails.
func (d *Daemon) restoreNetwork(ctx context.Context, c *store.Checkpoint, ref store.TargetRef, how *restoreHow) (a *network.Attachment, ns *os.File, undo func(), err error) {
	publish := how.Publish
	if how.Keep != nil {
		// It goes back into the namespace it slept with.
		if ns, err = os.Open(how.Keep.NetNS); err != nil {
			return nil, nil, nil, fmt.Errorf("open network namespace: %w", err)
		}
		return how.Keep, ns, func() {}, nil
	}
	if c.Network == nil {
		if len(publish) > 0 {
			return nil, nil, nil, fmt.Errorf("publishing ports needs a checkpoint of a workload in its own network (run --net %s): %w", network.Private, errdefs.ErrInvalidArgument)
		}
		return nil, nil, func() {}, nil
	}
	if d.networks == nil {
		return nil, nil, nil, fmt.Errorf("checkpoint %s is of a workload in its own network, and workload networks are unavailable here: %v: %w", c.Name, d.networksErr, errdefs.ErrFailedPrecondition)
	}
	want := *c.Network
	// Established connections come back in repair: nothing may reach the
	// namespace until they are restored (released by restore).
	want.Held = c.Options.TCPEstablished && ref.Kind == store.KindWorkload
	if ref.Name != c.Target.Name {
		want.IP, want.MAC, want.Ports = "", "", nil // the original may still hold them
	}
	if publish != nil {
		want.Ports = publish
	}
	// A container's name (NAMESPACE/ID) is no CNI container ID.
	id := strings.ReplaceAll(ref.Name, "/", ".") + "-" + store.NewID()[:8]
	made, err := d.networks.Make(ctx, id, want)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("network of %s: %w", ref.Name, err)
	}
	if want.IP != "" && made.IP != want.IP {
		w := fmt.Sprintf("its address %s is another workload's here: it has %s; connections to the old one are lost", want.IP, made.IP)
		d.log.Warn("restored at another address", "target", ref.Key(), "had", want.IP, "has", made.IP)
		how.warnings = append(how.warnings, w)
	}
	undo = func() {
		if err := d.networks.Leave(context.WithoutCancel(ctx), made); err != nil {
			d.log.Warn("release the network of a failed restore", "target", ref.Key(), "err", err)
		}
	}
	if ns, err = os.Open(made.NetNS); err != nil {
		undo()
		return nil, nil, nil, fmt.Errorf("open network namespace: %w", err)
	}
	return &made, ns, undo, nil
}

// containerNetwork makes the namespace a container whose own was outside
// its checkpoint goes into (one of another engine's networks, or one
// ckptd made): its path for runc, and the warnings to give.
func (d *Daemon) containerNetwork(ctx context.Context, c *store.Checkpoint, ref store.TargetRef) (a *network.Attachment, undo func(), warnings []string, err error) {
	if c.Network == nil {
		return nil, func() {}, nil, nil
	}
	how := &restoreHow{}
	a, ns, undo, err := d.restoreNetwork(ctx, c, ref, how)
	if err != nil {
		return nil, nil, nil, err
	}
	ns.Close() // runc opens it by path
	if c.Network.IP == "" && c.Container != nil && c.Container.Engine != "" {
		how.warnings = append(how.warnings, fmt.Sprintf("its network was %s's, outside its checkpoint: it is on ckptd's network now, at %s (its old addresses are not kept)", c.Container.Engine, a.IP))
	}
	return a, undo, how.warnings, nil
}
