package archive

import (
	"archive/tar"
	"encoding/json"
	"strings"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/store"
)

// The entries an archive carries for the field's tools (Podman, CRI-O,
// checkpointctl) beside the checkpoint's own files. Import skips them:
// they are made from the record, which ckptd.json carries whole.
const (
	configDumpName   = "config.dump"
	deletedFilesName = "deleted.files"
	specDumpName     = "spec.dump"
	checkpointDir    = "checkpoint/"
)

// configDump is the part of Podman's container config (config.dump) that
// checkpointctl and CRI-O read, under Podman's JSON names.
type configDump struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	RootfsImage     string     `json:"rootfsImage,omitempty"`
	RootfsImageRef  string     `json:"rootfsImageRef,omitempty"`
	RootfsImageID   string     `json:"rootfsImageID,omitempty"` // Podman's: the config digest's hex
	RootfsImageName string     `json:"rootfsImageName,omitempty"`
	Runtime         string     `json:"runtime,omitempty"`
	Created         *time.Time `json:"createdTime,omitempty"`
	Checkpointed    *time.Time `json:"checkpointedTime,omitempty"`
}

func configDumpOf(c *store.Checkpoint) configDump {
	// ckptd does not keep the target's own creation time: the checkpoint's
	// stands in, as year 1 would mislead.
	d := configDump{ID: c.ID, Name: c.Target.Name, Created: &c.Created, Checkpointed: &c.Created}
	if ct := c.Container; ct != nil {
		d.ID, d.Name = ct.ID, ct.ID
		d.RootfsImage, d.RootfsImageName, d.RootfsImageRef = ct.Image, ct.Image, ct.ImageDigest
		d.RootfsImageID = strings.TrimPrefix(ct.ImageID, "sha256:")
		d.Runtime = "runc"
	}
	if d.Name == "" {
		d.Name = c.Name
	}
	return d
}

// specOf is the OCI spec written as spec.dump for a checkpoint that has
// none (a process or workload): its command, and annotations that name
// it for checkpointctl (which reads an unknown manager's names from the
// CRI annotations).
func specOf(c *store.Checkpoint) rspec.Spec {
	return rspec.Spec{
		Version: rspec.Version,
		Process: &rspec.Process{Args: c.Target.Command},
		Annotations: map[string]string{
			"io.container.manager":             "ckptd",
			"io.kubernetes.cri.container-name": configDumpOf(c).Name,
			"io.ckptd.target.kind":             c.Target.Kind,
		},
	}
}

// writeCompat adds the checkpoint/ directory entry and config.dump, and
// spec.dump when c has no container spec of its own.
func writeCompat(tw *tar.Writer, c *store.Checkpoint, now time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: checkpointDir, Typeflag: tar.TypeDir, Mode: 0o700, ModTime: now}); err != nil {
		return err
	}
	if err := writeJSON(tw, configDumpName, configDumpOf(c), now); err != nil {
		return err
	}
	if _, ok := c.Files[store.ContainerSpecFile]; ok {
		return nil
	}
	return writeJSON(tw, specDumpName, specOf(c), now)
}

func writeJSON(tw *tar.Writer, name string, v any, now time.Time) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: now}); err != nil {
		return err
	}
	_, err = tw.Write(b)
	return err
}
