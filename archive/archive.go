// Package archive writes and reads checkpoint archives: one tar stream
// (zstd, gzip or plain) in the layout Podman and CRI-O use for container
// checkpoints (CRIU's images under checkpoint/, the OCI spec as
// spec.dump, the writable layer as rootfs-diff.tar, stats-dump and
// dump.log at the top) plus ckptd's own record, ckptd.json.
package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// RecordName is ckptd's checkpoint record in an archive.
const RecordName = "ckptd.json"

// Compressions are the values Write takes.
var Compressions = []string{"zstd", "gzip", "none"}

// topLevel maps a checkpoint's files that Podman keeps beside, not in,
// checkpoint/ to their archive names.
var topLevel = map[string]string{
	store.ContainerSpecFile: "spec.dump",
	store.RootfsDiffFile:    "rootfs-diff.tar",
	store.DevShmFile:        "devshm-checkpoint.tar",
	"stats-dump":            "stats-dump",
	"dump.log":              "dump.log",
}

// nameIn is a checkpoint file's name in an archive.
func nameIn(file string) string {
	if n, ok := topLevel[file]; ok {
		return n
	}
	return "checkpoint/" + file
}

// fileOf is the checkpoint file an archive entry holds; ok is false for
// entries that are not a checkpoint file.
func fileOf(entry string) (string, bool) {
	if f, ok := strings.CutPrefix(entry, "checkpoint/"); ok {
		return f, plainName(f)
	}
	for file, n := range topLevel {
		if n == entry {
			return file, true
		}
	}
	return "", false
}

func plainName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}

// Write streams checkpoint c, whose files are in dir, to w as an archive
// compressed with comp.
func Write(w io.Writer, dir string, c *store.Checkpoint, comp string) (err error) {
	cw, err := compressor(w, comp)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cw.Close()) }()
	tw := tar.NewWriter(cw)
	now := time.Now()
	if err := writeJSON(tw, RecordName, c, now); err != nil {
		return err
	}
	if err := writeCompat(tw, c, now); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Files))
	for n := range c.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := addFile(tw, filepath.Join(dir, n), nameIn(n), c.Files[n].Size, now); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, path, name string, size int64, now time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: now}); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s changed while being archived", path)
	}
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// CheckCompression refuses a compression Write does not know.
func CheckCompression(comp string) error {
	if comp == "" || slices.Contains(Compressions, comp) {
		return nil
	}
	return fmt.Errorf("compression %q: want one of %s: %w", comp, strings.Join(Compressions, ", "), errdefs.ErrInvalidArgument)
}

func compressor(w io.Writer, comp string) (io.WriteCloser, error) {
	if err := CheckCompression(comp); err != nil {
		return nil, err
	}
	switch comp {
	case "", "zstd":
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	case "gzip":
		return gzip.NewWriterLevel(w, gzip.BestSpeed)
	}
	return nopCloser{w}, nil // "none"
}

// maxRecord bounds ckptd.json.
const maxRecord = 16 << 20

// Contents is what Read found in an archive beside the files it wrote.
type Contents struct {
	// Record is ckptd.json; nil in an archive another engine wrote
	// (Podman, CRI-O, kubelet), which has ConfigDump instead.
	Record *store.Checkpoint
	// ConfigDump and DeletedFiles are Podman's and CRI-O's config.dump
	// and deleted.files, when the archive has them.
	ConfigDump, DeletedFiles []byte
}

// maxDump bounds config.dump and deleted.files.
const maxDump = 8 << 20

// Read unpacks an archive from r into the empty directory dir. Only
// checkpoint files are written, as plain names inside dir; ckptd.json,
// config.dump and deleted.files are returned, and other entries
// (Podman's logs and network state) are skipped. reserve is what must
// stay free on dir's file system. The files are not checked against the
// record here: the store does that.
func Read(r io.Reader, dir string, reserve int64) (*Contents, error) {
	dr, err := decompressor(r)
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	tr := tar.NewReader(dr)
	var c Contents
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a checkpoint archive, or one cut short: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := checkEntry(h, seen); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := c.take(tr, h, dir, reserve); err != nil {
			return nil, err
		}
	}
	if c.Record == nil && c.ConfigDump == nil {
		return nil, fmt.Errorf("not a checkpoint archive: it has neither %s nor Podman's or CRI-O's %s: %w",
			RecordName, configDumpName, errdefs.ErrInvalidArgument)
	}
	if c.Record == nil && !seen["checkpoint/inventory.img"] {
		return nil, fmt.Errorf("archive has no CRIU images (checkpoint/inventory.img): %w", errdefs.ErrInvalidArgument)
	}
	return &c, nil
}

// take reads the regular entry h: a record it keeps, a checkpoint file it
// writes into dir, anything else it skips.
func (c *Contents) take(tr io.Reader, h *tar.Header, dir string, reserve int64) error {
	var err error
	switch strings.TrimPrefix(h.Name, "./") {
	case RecordName:
		c.Record, err = readRecord(tr, h.Size)
		return err
	case configDumpName:
		c.ConfigDump, err = readSmall(tr, h, maxDump)
		return err
	case deletedFilesName:
		c.DeletedFiles, err = readSmall(tr, h, maxDump)
		return err
	}
	file, ok := fileOf(strings.TrimPrefix(h.Name, "./"))
	if !ok {
		return nil
	}
	if file == store.ContainerSpecFile && c.Record != nil {
		if _, listed := c.Record.Files[file]; !listed {
			return nil // made for the field's tools from the record
		}
	}
	return extract(tr, h, filepath.Join(dir, file), reserve)
}

func readSmall(r io.Reader, h *tar.Header, limit int64) ([]byte, error) {
	if h.Size > limit {
		return nil, fmt.Errorf("archive entry %s of %d bytes (at most %d): %w", h.Name, h.Size, limit, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(r, h.Size))
	if err == nil && int64(len(b)) != h.Size {
		err = fmt.Errorf("archive entry %s is cut short: %w", h.Name, errdefs.ErrInvalidArgument)
	}
	return b, err
}

// Bounds of what Read keeps of an archive's names, checked before each
// is kept: a checkpoint has a few files per process, and short names.
const (
	MaxEntries = 20000
	MaxNameLen = 1024
)

// checkEntry refuses what a checkpoint archive never holds: names that
// leave its root or are too long, more entries than MaxEntries, links,
// devices and other special files, and a name given twice. seen collects
// the names.
func checkEntry(h *tar.Header, seen map[string]bool) error {
	if len(h.Name) > MaxNameLen {
		return fmt.Errorf("archive entry %.40q... has a name of %d bytes (at most %d): %w", h.Name, len(h.Name), MaxNameLen, errdefs.ErrInvalidArgument)
	}
	if len(seen) >= MaxEntries {
		return fmt.Errorf("archive has more than %d entries: %w", MaxEntries, errdefs.ErrInvalidArgument)
	}
	name := strings.TrimPrefix(h.Name, "./")
	if name == "" || path.IsAbs(name) || name != path.Clean(name) && name != path.Clean(name)+"/" ||
		name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("archive entry %q leaves the archive's root: %w", h.Name, errdefs.ErrInvalidArgument)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir:
	case tar.TypeXGlobalHeader: // PAX metadata of the whole archive
		return nil
	default:
		return fmt.Errorf("archive entry %q is a %s; a checkpoint archive holds only files and directories: %w",
			h.Name, typeName(h.Typeflag), errdefs.ErrInvalidArgument)
	}
	key := strings.TrimSuffix(name, "/")
	if seen[key] {
		return fmt.Errorf("archive entry %q appears twice: %w", h.Name, errdefs.ErrInvalidArgument)
	}
	seen[key] = true
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device node"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("special entry (type %q)", t)
}

func readRecord(r io.Reader, size int64) (*store.Checkpoint, error) {
	if size > maxRecord {
		return nil, fmt.Errorf("%s of %d bytes: %w", RecordName, size, errdefs.ErrInvalidArgument)
	}
	var c store.Checkpoint
	if err := json.NewDecoder(io.LimitReader(r, size)).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", RecordName, err, errdefs.ErrInvalidArgument)
	}
	return &c, nil
}

func extract(r io.Reader, h *tar.Header, path string, reserve int64) error {
	if free, err := freeBytes(filepath.Dir(path)); err != nil {
		return err
	} else if h.Size < 0 || h.Size > free-reserve {
		return fmt.Errorf("archive entry %s of %d bytes does not fit (%d free): %w", h.Name, h.Size, free, errdefs.ErrFailedPrecondition)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("archive entry %s: %w", h.Name, err) // twice the same name too
	}
	n, err := io.Copy(f, r)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("archive entry %s is cut short: %w", h.Name, errdefs.ErrInvalidArgument)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != h.Size {
		err = fmt.Errorf("archive entry %s: %d of %d bytes", h.Name, n, h.Size)
	}
	return err
}

func decompressor(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One stream, one goroutine; a crafted frame may not ask for more
		// than a bounded window.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return gr, nil
	}
	return io.NopCloser(br), nil
}
