package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/foreign"
)

// Policy is what this host's owner lets a container from outside have.
// Each refusal names the setting that would allow it.
type Policy struct {
	HostPaths      []string // bind mounts of these host paths, and below them (trust_host_paths)
	HostNamespaces bool     // a network, PID, IPC or mount namespace shared with the host (trust_host_namespaces)
	Capabilities   bool     // capabilities beyond containerd's default set (trust_capabilities)
	Devices        bool     // device nodes, or access to every device (trust_devices)
	Unconfined     bool     // AppArmor unconfined, or a seccomp profile that allows everything (trust_unconfined)
	// Root allows a process or workload checkpoint whose tree runs as
	// root, as CRIU restores it (trust_root).
	Root bool
}

// MaxSpecBytes bounds an outside OCI spec.
const MaxSpecBytes = 4 << 20

// defaultCaps is containerd's default capability set; Podman's is a
// subset.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// runtimeAnnotations are the prefixes of annotations that tell the
// runtime or CRIU what to do (org.criu.config names a CRIU configuration
// file, run.oci.handler another runtime); they do not cross the boundary.
var runtimeAnnotations = []string{"org.criu.", "run.oci.", "io.containerd.runc.", "org.opencontainers.runc."}

// ownNamespaces are those a container from outside must have of its own.
var ownNamespaces = []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.IPCNamespace, specs.MountNamespace}

// Spec checks the OCI spec at path, a container's from outside, against
// p, and rewrites it without its hooks and runtime annotations. It
// returns what it dropped, or an error naming what the policy refuses.
func Spec(path string, p Policy) ([]string, error) {
	spec, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	if err := p.check(spec); err != nil {
		return nil, err
	}
	dropped := strip(spec)
	if len(dropped) == 0 {
		return nil, nil
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return dropped, os.WriteFile(path, out, 0o600)
}

func readSpec(path string) (*specs.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSpecBytes {
		return nil, fmt.Errorf("container spec is over %d MiB: %w", MaxSpecBytes>>20, errdefs.ErrInvalidArgument)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("container spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil || spec.Linux == nil {
		return nil, fmt.Errorf("container spec is not a Linux container's: %w", errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// strip removes the hooks and runtime annotations, saying what went.
func strip(spec *specs.Spec) []string {
	var dropped []string
	if h := spec.Hooks; h != nil {
		if n := len(h.Prestart) + len(h.CreateRuntime) + len(h.CreateContainer) + len(h.StartContainer) + len(h.Poststart) + len(h.Poststop); n > 0 {
			dropped = append(dropped, fmt.Sprintf("its %d OCI hooks (commands run on the host)", n))
		}
		spec.Hooks = nil
	}
	for k := range spec.Annotations {
		for _, prefix := range runtimeAnnotations {
			if strings.HasPrefix(k, prefix) {
				dropped = append(dropped, fmt.Sprintf("its annotation %s", k))
				delete(spec.Annotations, k)
				break
			}
		}
	}
	slices.Sort(dropped)
	return dropped
}

// check refuses what p does not allow, naming the setting.
func (p Policy) check(spec *specs.Spec) error {
	var errs []error
	refuse := func(what, setting string) {
		errs = append(errs, fmt.Errorf("%s (allowed only by %s in ckptd's config)", what, setting))
	}
	for _, m := range spec.Mounts {
		if isBind(m) && !strings.HasPrefix(m.Source, foreign.LocalSource) && !p.hostPathAllowed(m.Source) {
			refuse(fmt.Sprintf("a bind mount of the host's %s", m.Source), "trust_host_paths")
		}
	}
	if !p.HostNamespaces {
		for _, t := range ownNamespaces {
			if !hasOwn(spec.Linux.Namespaces, t) {
				refuse(fmt.Sprintf("the host's %s namespace", t), "trust_host_namespaces")
			}
		}
	}
	if !p.Capabilities {
		if extra := extraCaps(spec.Process.Capabilities); len(extra) > 0 {
			refuse("capabilities beyond the default ("+strings.Join(extra, ", ")+")", "trust_capabilities")
		}
	}
	if !p.Devices {
		if len(spec.Linux.Devices) > 0 {
			refuse(fmt.Sprintf("%d device nodes", len(spec.Linux.Devices)), "trust_devices")
		}
		if r := spec.Linux.Resources; r != nil && allowsAllDevices(r.Devices) {
			refuse("access to every device", "trust_devices")
		}
	}
	if !p.Unconfined {
		if spec.Process.ApparmorProfile == "unconfined" {
			refuse("AppArmor unconfined", "trust_unconfined")
		}
		if s := spec.Linux.Seccomp; s != nil && s.DefaultAction == specs.ActAllow && len(s.Syscalls) == 0 {
			refuse("a seccomp profile that allows every system call", "trust_unconfined")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the container's spec asks for %w: %w", errors.Join(errs...), errdefs.ErrPermissionDenied)
	}
	return nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// hostPathAllowed says whether src is one of p.HostPaths or below one.
func (p Policy) hostPathAllowed(src string) bool {
	if !filepath.IsAbs(src) {
		return false
	}
	src = filepath.Clean(src)
	for _, a := range p.HostPaths {
		a = filepath.Clean(a)
		if src == a || strings.HasPrefix(src, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}

func hasOwn(nss []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	for _, n := range nss {
		if n.Type == t {
			return n.Path == "" // a path joins an existing one: the host's, maybe
		}
	}
	return false
}

func extraCaps(c *specs.LinuxCapabilities) []string {
	if c == nil {
		return nil
	}
	var extra []string
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		for _, cap := range set {
			if !slices.Contains(defaultCaps, strings.ToUpper(cap)) && !slices.Contains(extra, cap) {
				extra = append(extra, cap)
			}
		}
	}
	slices.Sort(extra)
	return extra
}

// allowsAllDevices finds a cgroup rule that lets the container use every
// device, as privileged containers have.
func allowsAllDevices(rules []specs.LinuxDeviceCgroup) bool {
	for _, r := range rules {
		if r.Allow && (r.Type == "" || r.Type == "a") && r.Major == nil && r.Minor == nil {
			return true
		}
	}
	return false
}
