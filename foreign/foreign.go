// Package foreign turns container checkpoints that other engines wrote
// (Podman's `container checkpoint --export`, CRI-O's and kubelet's
// archives) into ckptd container checkpoints that containerd restores:
// the record comes from their config.dump, the OCI spec is rewritten
// for containerd, and deleted.files becomes whiteouts in the writable
// layer. What cannot be carried is refused by name.
package foreign

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/store"
)

// configDump is what ckptd reads of Podman's and CRI-O's config.dump.
type configDump struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImage     string    `json:"rootfsImage"`     // CRI-O: as the user asked
	RootfsImageRef  string    `json:"rootfsImageRef"`  // CRI-O: the image ID
	RootfsImageName string    `json:"rootfsImageName"` // both
	RootfsImageID   string    `json:"rootfsImageID"`   // Podman
	Runtime         string    `json:"runtime"`
	Checkpointed    time.Time `json:"checkpointedTime"`
}

// LocalSource marks a bind mount whose source the engine made for the
// container on its own host (hosts, hostname, resolv.conf, its env file,
// /dev/shm): a restore makes a fresh one (package container).
const LocalSource = "ckptd-local:"

// localMounts are the destinations of those engine-made bind mounts, and
// the names a restore gives their fresh sources.
var localMounts = map[string]string{
	"/etc/hosts":         "hosts",
	"/etc/hostname":      "hostname",
	"/etc/resolv.conf":   "resolv.conf",
	"/run/.containerenv": "containerenv",
	"/dev/shm":           "shm",
}

// Convert makes the record of a foreign container checkpoint unpacked in
// dir (CRIU's images, spec.dump as store.ContainerSpecFile, perhaps the
// writable layer and /dev/shm), rewriting its spec and layer in place.
// The container is to be restored into containerd namespace ns; name is
// the checkpoint's name (the container's when empty).
func Convert(dir string, rawConfig, deletedFiles []byte, ns, name string) (*store.Checkpoint, error) {
	var cfg configDump
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("config.dump: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	image, imageID := cfg.RootfsImageName, cfg.RootfsImageID
	if imageID == "" {
		imageID = cfg.RootfsImageRef
	}
	if image == "" {
		image = cfg.RootfsImage
	}
	id := containerID(cfg)
	if image == "" || id == "" {
		return nil, fmt.Errorf("config.dump names no container or no image: %w", errdefs.ErrInvalidArgument)
	}
	specPath := filepath.Join(dir, store.ContainerSpecFile)
	engine, externalNet, err := rewriteSpec(specPath, ns, id)
	if err != nil {
		return nil, err
	}
	info := &store.ContainerInfo{
		Namespace: ns, ID: id, Image: image, ImageID: digestOf(imageID),
		Snapshotter: "overlayfs", Runtime: "io.containerd.runc.v2", Engine: engine,
	}
	if info.RootfsMediaType, err = writableLayer(dir, deletedFiles); err != nil {
		return nil, err
	}
	created := cfg.Checkpointed.UTC()
	if created.IsZero() {
		created = time.Now().UTC()
	}
	if name == "" {
		name = id
	}
	c := &store.Checkpoint{
		ID: filepath.Base(dir), Name: name, Created: created,
		Target:    store.TargetRef{Kind: store.KindContainer, Name: ns + "/" + id},
		Container: info,
	}
	if externalNet {
		c.Network = &network.Spec{Mode: network.Private}
	}
	return c, nil
}

var plainID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// containerID is the foreign container's name, if containerd takes it as
// an ID, else its ID.
func containerID(cfg configDump) string {
	for _, s := range []string{cfg.Name, cfg.ID} {
		if plainID.MatchString(s) {
			return s
		}
	}
	return ""
}

func digestOf(id string) string {
	if id == "" || strings.Contains(id, ":") {
		return id
	}
	return "sha256:" + id
}

// maxSpec bounds spec.dump (ingest.MaxSpecBytes, which reads it next).
const maxSpec = 4 << 20

// rewriteSpec makes the engine's spec one containerd runs: the root is
// the bundle's, the cgroup containerd's, hooks are the engine's own and
// go, and the engine-made bind mounts get fresh sources at restore. A
// network namespace the engine kept outside the container (a path)
// is left out, to be made on ckptd's network at restore (externalNet). It
// returns the engine's name.
func rewriteSpec(path, ns, id string) (engine string, externalNet bool, err error) {
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return "", false, fmt.Errorf("archive has no spec.dump: %w", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return "", false, err
	}
	if st.Size() > maxSpec {
		return "", false, fmt.Errorf("spec.dump of %d bytes (at most %d): %w", st.Size(), maxSpec, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", false, fmt.Errorf("spec.dump: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if spec.Linux == nil || spec.Process == nil {
		return "", false, fmt.Errorf("spec.dump is not a Linux container's spec: %w", errdefs.ErrInvalidArgument)
	}
	for i, n := range spec.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace && n.Path != "" {
			// The engine's network: the restore makes a namespace on
			// ckptd's network in its place.
			spec.Linux.Namespaces[i].Path = ""
			externalNet = true
		}
	}
	engine = spec.Annotations["io.container.manager"]
	if engine == "" {
		engine = "unknown"
	}
	readonly := spec.Root != nil && spec.Root.Readonly
	spec.Root = &specs.Root{Path: "rootfs", Readonly: readonly}
	spec.Hooks = nil
	spec.Linux.CgroupsPath = "/" + ns + "/" + id
	for i, m := range spec.Mounts {
		if local, ok := localMounts[m.Destination]; ok && m.Type == "bind" {
			spec.Mounts[i].Source = LocalSource + local
		}
	}
	out, err := json.Marshal(&spec)
	if err != nil {
		return "", false, err
	}
	return engine, externalNet, os.WriteFile(path, out, 0o600)
}
