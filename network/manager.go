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
// its own) and wires it for mode: on the network with ports published,
// or loopback only. On failure nothing of it is left.
func (m *Manager) Join(ctx context.Context, id string, pid int, mode string, ports []Port) (_ Attachment, err error) {
	ns, err := PinNS(m.nsDir, id, pid)
	if err != nil {
		return Attachment{}, err
	}
	var a Attachment
	switch mode {
	case Private:
		a, err = m.net.Attach(ctx, id, ns, ports)
	case None:
		if len(ports) > 0 {
			err = fmt.Errorf("--net none publishes no ports")
			break
		}
		a, err = m.net.AttachLoopback(ctx, id, ns)
	default:
		err = fmt.Errorf("network mode %q: want %s, %s or %s", mode, Private, None, Host)
	}
	if err != nil {
		return Attachment{}, errors.Join(err, RemoveNS(ns))
	}
	return a, nil
}

// Leave takes a namespace Join wired off the network and lets it go.
func (m *Manager) Leave(ctx context.Context, a Attachment) error {
	return errors.Join(m.net.Detach(ctx, a), RemoveNS(a.NetNS))
}
