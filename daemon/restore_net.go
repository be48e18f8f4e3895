package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/images"
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

// netRestore is the network a restored tree goes into: its namespace at
// once, for CRIU, and its wiring, which may go on while CRIU restores.
type netRestore struct {
	ns      *os.File // nil: the host's network
	path    string
	done    chan struct{}
	a       *network.Attachment
	err     error
	warning string // set with a: it could not keep its address
	made    bool   // a is a new attachment, which undo lets go of
	leave   func(network.Attachment)
}

// wait waits for the wiring; the namespace is on the network after it.
func (n *netRestore) wait() (*network.Attachment, error) {
	<-n.done
	return n.a, n.err
}

// undo lets go of the network of a failed restore.
func (n *netRestore) undo() {
	if a, err := n.wait(); err == nil && n.made {
		n.leave(*a)
	}
}

// restoreNetwork makes the namespace a restore of c as ref goes into:
// at c's address with c's ports in place, or for a copy a new address
// with the ports asked for, or the one it kept while it slept. With
// async its wiring goes on in the background (wait for it). The caller
// hands ns to CRIU, then closes it, and calls undo if the restore fails.
func (d *Daemon) restoreNetwork(ctx context.Context, c *store.Checkpoint, ref store.TargetRef, how *restoreHow, async bool) (*netRestore, error) {
	n := &netRestore{done: make(chan struct{})}
	publish := how.Publish
	if how.Keep != nil {
		// It goes back into the namespace it slept with.
		ns, err := os.Open(how.Keep.NetNS)
		if err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		n.ns, n.path, n.a = ns, how.Keep.NetNS, how.Keep
		close(n.done)
		return n, nil
	}
	if c.Network == nil {
		if len(publish) > 0 {
			return nil, fmt.Errorf("publishing ports needs a checkpoint of a workload in its own network (run --net %s): %w", network.Private, errdefs.ErrInvalidArgument)
		}
		close(n.done)
		return n, nil
	}
	if d.networks == nil {
		return nil, fmt.Errorf("checkpoint %s is of a workload in its own network, and workload networks are unavailable here: %v: %w", c.Name, d.networksErr, errdefs.ErrFailedPrecondition)
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
	p, err := d.networks.Begin(id, want)
	if err != nil {
		return nil, fmt.Errorf("network of %s: %w", ref.Name, err)
	}
	if n.ns, err = os.Open(p.NetNS); err != nil {
		return nil, errors.Join(fmt.Errorf("open network namespace: %w", err), network.RemoveNS(p.NetNS))
	}
	n.path = p.NetNS
	n.leave = func(a network.Attachment) {
		if err := d.networks.Leave(context.WithoutCancel(ctx), a); err != nil {
			d.log.Warn("release the network of a failed restore", "target", ref.Key(), "err", err)
		}
	}
	wire := func() {
		defer close(n.done)
		made, err := p.Wire(ctx)
		if err == nil && wireFail != "" {
			err = errors.Join(errors.New(wireFail), d.networks.Leave(context.WithoutCancel(ctx), made))
		}
		if err != nil {
			n.err = fmt.Errorf("network of %s: %w", ref.Name, err)
			return
		}
		n.a, n.made = &made, true
		if want.IP != "" && made.IP != want.IP {
			n.warning = fmt.Sprintf("its address %s is another workload's here: it has %s; connections to the old one are lost", want.IP, made.IP)
			d.log.Warn("restored at another address", "target", ref.Key(), "had", want.IP, "has", made.IP)
		}
	}
	if async {
		go wire()
		return n, nil
	}
	wire()
	if n.err != nil {
		n.ns.Close()
		return nil, n.err
	}
	return n, nil
}

// wireBeside says whether a restore of the images in dir may wire its
// network while CRIU restores: none of its sockets needs an address or a
// route of it (images.NeedsNetwork), and no connection is restored.
func wireBeside(c *store.Checkpoint, how *restoreHow, dir string) bool {
	if c.Network == nil || how.Keep != nil || c.Options.TCPEstablished {
		return false
	}
	needs, err := images.NeedsNetwork(dir)
	return err == nil && !needs
}

// containerNetwork makes the namespace a container whose own was outside
// its checkpoint goes into (one of another engine's networks, or one
// ckptd made): its path for runc, and the warnings to give.
func (d *Daemon) containerNetwork(ctx context.Context, c *store.Checkpoint, ref store.TargetRef) (a *network.Attachment, undo func(), warnings []string, err error) {
	if c.Network == nil {
		return nil, func() {}, nil, nil
	}
	n, err := d.restoreNetwork(ctx, c, ref, &restoreHow{}, false)
	if err != nil {
		return nil, nil, nil, err
	}
	n.ns.Close() // runc opens it by path
	if n.warning != "" {
		warnings = append(warnings, n.warning)
	}
	if c.Network.IP == "" && c.Container != nil && c.Container.Engine != "" {
		warnings = append(warnings, fmt.Sprintf("its network was %s's, outside its checkpoint: it is on ckptd's network now, at %s (its old addresses are not kept)", c.Container.Engine, n.a.IP))
	}
	return n.a, n.undo, warnings, nil
}
