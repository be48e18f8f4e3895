// Package ociimage builds a tiny OCI image from the host's static busybox,
// as an OCI layout tar that containerd imports without a registry. Tests
// and benchmarks use it as a container base image.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Busybox is where Debian's busybox-static installs the binary.
const Busybox = "/bin/busybox"

// Image is a built image: its layout tar and what it is called.
type Image struct {
	Name   string // e.g. ckptd.test/busybox:latest
	Layout []byte // OCI layout as a tar, for containerd's Import
	Digest string // manifest digest
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Build makes an image called name holding busybox, its applets as
// symlinks, and the usual empty directories. extra adds files (path ->
// content) to the layer, so that tests can make images that differ.
func Build(name string, extra map[string]string) (*Image, error) {
	layer, err := rootfsLayer(extra)
	if err != nil {
		return nil, err
	}
	layerSum := sha256.Sum256(layer)
	layerDigest := "sha256:" + hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC(),
		"config":       map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return nil, err
	}
	blobs := map[string][]byte{}
	configDesc := addBlob(blobs, "application/vnd.oci.image.config.v1+json", config)
	layerDesc := addBlob(blobs, "application/vnd.oci.image.layer.v1.tar", layer)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manifestDesc := addBlob(blobs, "application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Annotations = map[string]string{"io.containerd.image.name": name}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return nil, err
	}

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return nil, err
		}
	}
	for _, digest := range slices.Sorted(maps.Keys(blobs)) {
		if err := writeFile(tw, "blobs/sha256/"+strings.TrimPrefix(digest, "sha256:"), 0o644, blobs[digest]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &Image{Name: name, Layout: out.Bytes(), Digest: manifestDesc.Digest}, nil
}

func addBlob(blobs map[string][]byte, mediaType string, data []byte) descriptor {
	sum := sha256.Sum256(data)
	d := descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: len(data)}
	blobs[d.Digest] = data
	return d
}

func rootfsLayer(extra map[string]string) ([]byte, error) {
	bin, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, fmt.Errorf("busybox-static is needed for the test image: %w", err)
	}
	list, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "data"} {
		mode := int64(0o755)
		if dir == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", 0o755, bin); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
	}
	for _, path := range slices.Sorted(maps.Keys(extra)) {
		if err := writeFile(tw, strings.TrimPrefix(path, "/"), 0o644, []byte(extra[path])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}
