package foreign

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// maxDeleted bounds the paths deleted.files may list.
const maxDeleted = 100000

// writableLayer turns the engine's rootfs-diff.tar (files changed, no
// whiteouts) and deleted.files (a JSON list of removed paths) into one
// OCI layer in dir, with a whiteout per removed path, and returns its
// media type: empty when the container changed nothing.
func writableLayer(dir string, deletedFiles []byte) (string, error) {
	var deleted []string
	if len(deletedFiles) > 0 {
		if err := json.Unmarshal(deletedFiles, &deleted); err != nil {
			return "", fmt.Errorf("deleted.files: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if len(deleted) > maxDeleted {
			return "", fmt.Errorf("deleted.files lists %d paths (at most %d): %w", len(deleted), maxDeleted, errdefs.ErrInvalidArgument)
		}
	}
	diff := filepath.Join(dir, store.RootfsDiffFile)
	_, err := os.Stat(diff)
	hasDiff := err == nil
	if !hasDiff && !os.IsNotExist(err) {
		return "", err
	}
	if !hasDiff && len(deleted) == 0 {
		return "", nil
	}
	if len(deleted) > 0 {
		if err := addWhiteouts(diff, hasDiff, deleted); err != nil {
			return "", fmt.Errorf("writable layer: %w", err)
		}
	}
	return ocispec.MediaTypeImageLayer, nil
}

// addWhiteouts rewrites the tar at diff (empty when !exists) with a
// whiteout entry for each deleted path.
func addWhiteouts(diff string, exists bool, deleted []string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(diff), ".rootfs-diff-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	tw := tar.NewWriter(tmp)
	if exists {
		if err := copyEntries(tw, diff); err != nil {
			tmp.Close()
			return err
		}
	}
	for _, p := range deleted {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if clean == "" {
			continue
		}
		wh := path.Join(path.Dir(clean), ".wh."+path.Base(clean))
		if err := tw.WriteHeader(&tar.Header{Name: wh, Mode: 0o600, Typeflag: tar.TypeReg}); err != nil {
			tmp.Close()
			return err
		}
	}
	err = errors.Join(tw.Close(), tmp.Sync(), tmp.Close())
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), diff)
}

func copyEntries(tw *tar.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rootfs-diff.tar: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
