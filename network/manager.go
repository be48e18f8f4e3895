package network

import (
	"context"
	"errors"
	"fmt"
)

// Modes of a workload's network: its own namespace on ckptd's network
// (Private), its own namespace with only loopback (None), or the host's.
const (
	Host    = "host"
	Private = "private"
	None    = "none"
)

// Spec is what a workload's own network is: what a checkpoint keeps, and
// what a restore or a migration makes again.
type Spec struct {
	Mode string `json:"mode"`
	IP   string `json:"ip,omitempty"`  // an address to ask for (Make), or the one it had
	MAC  string `json:"mac,omitempty"` // eth0's, asked for with IP
	// Held makes the namespace locked (see Hold) before it is wired; the
	// caller releases it. Not kept.
	Held  bool   `json:"-"`
	Ports []Port `json:"ports,omitempty"`
}

// Spec is what a makes again.
func (a Attachment) Spec() Spec {
	if a.LoopbackOnly {
		return Spec{Mode: None}
	}
	return Spec{Mode: Private, IP: a.IP, MAC: a.MAC, Ports: a.Ports}
}

// Manager gives processes their own namespaces on one network.
type Manager struct {
	net   *Network
	nsDir string // where the namespaces are kept (bind mounts)
}

// NewManager checks the network's plugins; namespaces go under nsDir.
func NewManager(cfg Config, nsDir string) (*Manager, error) {
	n, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Manager{net: n, nsDir: nsDir}, nil
}

// Join keeps the network namespace of process pid (which it must have of
// its own) and wires it as s says, with a new address. On failure nothing
// of it is left.
func (m *Manager) Join(ctx context.Context, id string, pid int, s Spec) (Attachment, error) {
	ns, err := PinNS(m.nsDir, id, pid)
	if err != nil {
		return Attachment{}, err
	}
	s.IP, s.MAC = "", ""
	return m.wire(ctx, id, ns, s)
}

// Make makes a new namespace and wires it as s says, at s.IP when set and
// free (another workload may hold it: the address given says), with s.MAC
// along with it: a restored tree goes into it. On failure nothing of it
// is left.
func (m *Manager) Make(ctx context.Context, id string, s Spec) (Attachment, error) {
	p, err := m.Begin(id, s)
	if err != nil {
		return Attachment{}, err
	}
	return p.Wire(ctx)
}

// Pending is a namespace Begin made and has not wired yet.
type Pending struct {
	NetNS string
	wire  func(context.Context) (Attachment, error)
}

// Wire puts the namespace on the network, as Make does; on failure the
// namespace is gone.
func (p Pending) Wire(ctx context.Context) (Attachment, error) { return p.wire(ctx) }

// Begin makes the namespace Make would, held as s says, for its wiring
// to follow: a restore hands it to CRIU while it is wired.
func (m *Manager) Begin(id string, s Spec) (Pending, error) {
	ns, err := NewNS(m.nsDir, id)
	if err != nil {
		return Pending{}, err
	}
	if s.Held {
		if err := Hold(ns); err != nil {
			return Pending{}, errors.Join(err, RemoveNS(ns))
		}
	}
	return Pending{NetNS: ns, wire: func(ctx context.Context) (Attachment, error) {
		if s.IP != "" && m.net.Taken(s.IP) {
			s.IP, s.MAC = "", ""
		}
		return m.wire(ctx, id, ns, s)
	}}, nil
}

func (m *Manager) wire(ctx context.Context, id, ns string, s Spec) (_ Attachment, err error) {
	var a Attachment
	switch s.Mode {
	case Private:
		a, err = m.net.Attach(ctx, Attachment{ID: id, NetNS: ns, Ports: s.Ports, IP: s.IP, MAC: s.MAC})
	case None:
		if len(s.Ports) > 0 {
			err = fmt.Errorf("--net none publishes no ports")
			break
		}
		a, err = m.net.AttachLoopback(ctx, id, ns)
	default:
		err = fmt.Errorf("network mode %q: want %s, %s or %s", s.Mode, Private, None, Host)
	}
	if err != nil {
		return Attachment{}, errors.Join(err, RemoveNS(ns))
	}
	return a, nil
}

// Leave takes a namespace Join or Make wired off the network and lets it
// go.
func (m *Manager) Leave(ctx context.Context, a Attachment) error {
	return errors.Join(m.net.Detach(ctx, a), RemoveNS(a.NetNS))
}
