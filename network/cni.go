package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// Config is the network workloads join.
type Config struct {
	// PluginDirs are where the CNI plugins are (Debian's
	// containernetworking-plugins: /usr/lib/cni).
	PluginDirs []string
	// StateDir keeps CNI's cache of what it attached (which Detach reads
	// back) and host-local's address allocations.
	StateDir string
	Name     string // the CNI network's name (default "ckptd")
	Bridge   string // the host bridge (default "ckptd0")
	Subnet   string // the workloads' addresses (default 10.77.0.0/16)
}

// Port publishes a workload's port on the host.
type Port struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	Protocol      string `json:"protocol"` // "tcp" or "udp"
}

// Attachment is a namespace's place on the network: what Detach undoes.
type Attachment struct {
	ID    string `json:"id"` // CNI's container ID
	NetNS string `json:"netns"`
	IP    string `json:"ip,omitempty"`
	// MAC is eth0's: a namespace made again at the same address takes it
	// too, or the host's neighbour entry would point at the old one.
	MAC   string `json:"mac,omitempty"`
	Ports []Port `json:"ports,omitempty"`
	// LoopbackOnly is a namespace with only its loopback up (--net none).
	LoopbackOnly bool `json:"loopback_only,omitempty"`
}

// Network attaches network namespaces to one CNI network.
type Network struct {
	cni      *libcni.CNIConfig
	list, lo *libcni.NetworkConfigList
	ipam     string // host-local's allocations: a file per address in use
	bridge   string
}

// New checks that the plugins the network needs are installed.
func New(cfg Config) (*Network, error) {
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = []string{"/usr/lib/cni"}
	}
	cfg.Name = or(cfg.Name, "ckptd")
	cfg.Bridge = or(cfg.Bridge, "ckptd0")
	cfg.Subnet = or(cfg.Subnet, "10.77.0.0/16")
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if !pluginIn(cfg.PluginDirs, p) {
			return nil, fmt.Errorf("CNI plugin %s is not in %v (make deps installs containernetworking-plugins)", p, cfg.PluginDirs)
		}
	}
	list, err := libcni.ConfListFromBytes(bridgeList(cfg))
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	lo, err := libcni.ConfListFromBytes([]byte(`{"cniVersion": "1.0.0", "name": "` + cfg.Name + `-lo", "plugins": [{"type": "loopback"}]}`))
	if err != nil {
		return nil, err
	}
	return &Network{
		cni:  libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(cfg.StateDir, "cache"), newOwnedExec()),
		list: list, lo: lo, ipam: filepath.Join(cfg.StateDir, "ipam", cfg.Name), bridge: cfg.Bridge,
	}, nil
}

// bridgeList is the network: a bridge with NAT to the outside, addresses
// from host-local, and published ports by portmap.
func bridgeList(cfg Config) []byte {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cfg.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": cfg.Bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"capabilities": map[string]bool{"mac": true},
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": cfg.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(cfg.StateDir, "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, _ := json.Marshal(conf) // maps of strings and bools: always encodes
	return b
}

// Taken says whether another attachment holds ip (host-local keeps a
// file named by each address it gave).
func (n *Network) Taken(ip string) bool {
	if net.ParseIP(ip) == nil {
		return false
	}
	_, err := os.Stat(filepath.Join(n.ipam, ip))
	return err == nil
}

// validID is what CNI takes as a container ID.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// Attach puts the namespace at want.NetNS on the network as want.ID, with
// want.Ports published, at want.IP when set (host-local refuses one in
// use or outside the subnet) and with want.MAC when set. On failure nothing of it stays attached.
func (n *Network) Attach(ctx context.Context, want Attachment) (_ Attachment, err error) {
	if !validID.MatchString(want.ID) {
		return Attachment{}, fmt.Errorf("network attachment id %q: want letters, digits, '_', '.', '-'", want.ID)
	}
	a := Attachment{ID: want.ID, NetNS: want.NetNS, Ports: want.Ports}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Detach(context.WithoutCancel(ctx), a))
		}
	}()
	if _, err := n.cni.AddNetworkList(ctx, n.lo, n.runtime(a, "lo")); err != nil {
		return a, fmt.Errorf("bring up loopback in %s: %w", a.NetNS, err)
	}
	rt := n.runtime(a, "eth0")
	if want.MAC != "" {
		if _, err := net.ParseMAC(want.MAC); err != nil {
			return a, fmt.Errorf("MAC address %q: %w", want.MAC, err)
		}
		rt.CapabilityArgs["mac"] = want.MAC
	}
	if want.IP != "" {
		if net.ParseIP(want.IP).To4() == nil {
			return a, fmt.Errorf("address %q: want an IPv4 address", want.IP)
		}
		// host-local's IP argument; the other plugins ignore it.
		rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"IP", want.IP}}
	}
	res, err := n.cni.AddNetworkList(ctx, n.list, rt)
	if err != nil {
		return a, fmt.Errorf("attach %s to the network: %w", a.NetNS, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return a, err
	}
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			a.IP = ip.Address.IP.String()
		}
	}
	for _, i := range r.Interfaces {
		if i.Name == "eth0" && i.Sandbox != "" {
			a.MAC = i.Mac
		}
	}
	if a.IP == "" {
		return a, fmt.Errorf("the network gave %s no IPv4 address", a.NetNS)
	}
	return a, nil
}

// Detach takes an attachment off the network: its address and port rules
// are released. Call it while the namespace still exists (the bridge
// plugin finds its rules through the addresses inside); detaching what
// is not attached is not an error.
func (n *Network) Detach(ctx context.Context, a Attachment) error {
	var err error
	if !a.LoopbackOnly {
		if err = n.cni.DelNetworkList(ctx, n.list, n.cached(a)); err != nil {
			err = fmt.Errorf("detach %s from the network: %w", a.ID, err)
		}
		if err != nil && len(a.Ports) > 0 {
			// portmap deletes first, and refuses what it refused to add; the
			// bridge and host-local, after it, must still let go of the
			// veth and the address. Without mappings portmap does nothing.
			bare := a
			bare.Ports = nil
			if berr := n.cni.DelNetworkList(ctx, n.list, n.runtime(bare, "eth0")); berr != nil {
				err = errors.Join(err, berr)
			}
		}
	}
	if lerr := n.cni.DelNetworkList(ctx, n.lo, n.runtime(a, "lo")); lerr != nil {
		err = errors.Join(err, fmt.Errorf("loopback of %s: %w", a.ID, lerr))
	}
	return err
}

// cached is how a was attached, as CNI's cache kept it: a detach must
// give portmap the mappings it added, and the cache has them even when
// the caller's record was lost (ckptd stopped between an attach and its
// record). Without a cache entry, it is what a says.
func (n *Network) cached(a Attachment) *libcni.RuntimeConf {
	rt := n.runtime(a, "eth0")
	if _, c, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && c != nil && c.CapabilityArgs != nil {
		rt.CapabilityArgs = c.CapabilityArgs
	}
	return rt
}

func (n *Network) runtime(a Attachment, ifName string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.NetNS, IfName: ifName}
	if ifName != "lo" {
		ports := a.Ports
		if ports == nil {
			ports = []Port{}
		}
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

func pluginIn(dirs []string, name string) bool {
	for _, d := range dirs {
		if st, err := os.Stat(filepath.Join(d, name)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// AttachLoopback brings up only the loopback of the namespace at nsPath:
// a workload with no network beyond itself.
func (n *Network) AttachLoopback(ctx context.Context, id, nsPath string) (Attachment, error) {
	if !validID.MatchString(id) {
		return Attachment{}, fmt.Errorf("network attachment id %q: want letters, digits, '_', '.', '-'", id)
	}
	a := Attachment{ID: id, NetNS: nsPath, LoopbackOnly: true}
	if _, err := n.cni.AddNetworkList(ctx, n.lo, n.runtime(a, "lo")); err != nil {
		return a, errors.Join(fmt.Errorf("bring up loopback in %s: %w", nsPath, err), n.Detach(context.WithoutCancel(ctx), a))
	}
	return a, nil
}
