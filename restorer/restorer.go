// Package restorer brings a process tree back from CRIU images.
package restorer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	gocriu "github.com/checkpoint-restore/go-criu/v8"
	"github.com/checkpoint-restore/go-criu/v8/rpc"

	"github.com/ckptd/ckptd/criu"
)

// LogFile is the name of CRIU's restore log inside the work directory.
const LogFile = "restore.log"

// Options must match what the tree was dumped with.
type Options struct {
	TCPEstablished bool
	FileLocks      bool
	ExtUnixSk      bool
	ShellJob       bool
}

// Request is one restore.
type Request struct {
	ImagesDir string // read only: restores never write into a checkpoint
	WorkDir   string // restore.log and stats-restore go here
	Options   Options
	// Inherit hands open files to the restored tree in place of the ones
	// it had, keyed by CRIU's inherit-fd key (see FileKey).
	Inherit map[string]*os.File
	// BeforeResume runs when the tree is restored but not yet running; an
	// error makes CRIU kill the restored tree and fail the restore.
	BeforeResume func(pid int) error
}

// Result is what a successful restore reports.
type Result struct {
	PID     int // host PID of the restored root, a child of this process
	LogPath string
}

// Restorer runs CRIU restores.
type Restorer struct {
	bin criu.Binary
	log *slog.Logger
}

func New(bin criu.Binary, log *slog.Logger) *Restorer { return &Restorer{bin: bin, log: log} }

// Restore restores the tree in req.ImagesDir. The restored root becomes a
// child of the calling process (CRIU's rst_sibling), so the caller must
// reap it.
func (r *Restorer) Restore(ctx context.Context, req Request) (Result, error) {
	logPath := filepath.Join(req.WorkDir, LogFile)
	images, err := os.Open(req.ImagesDir)
	if err != nil {
		return Result{}, fmt.Errorf("open images dir: %w", err)
	}
	defer images.Close()
	work, err := os.Open(req.WorkDir)
	if err != nil {
		return Result{}, fmt.Errorf("open work dir: %w", err)
	}
	defer work.Close()

	opts := &rpc.CriuOpts{
		ImagesDirFd:    ptr(int32(images.Fd())),
		WorkDirFd:      ptr(int32(work.Fd())),
		LogFile:        ptr(LogFile),
		LogLevel:       ptr(int32(4)),
		RstSibling:     ptr(true),
		TcpEstablished: ptr(req.Options.TCPEstablished),
		FileLocks:      ptr(req.Options.FileLocks),
		ExtUnixSk:      ptr(req.Options.ExtUnixSk),
		ShellJob:       ptr(req.Options.ShellJob),
	}
	n := &notify{beforeResume: req.BeforeResume}
	r.log.Debug("criu restore", "images", req.ImagesDir, "work", req.WorkDir)
	err = r.bin.Do(func(c *gocriu.Criu) { inheritKeys(c, req.Inherit) },
		func(c *gocriu.Criu) error { return c.Restore(opts, n) })
	if err != nil {
		if n.hookErr != nil {
			return Result{LogPath: logPath}, n.hookErr
		}
		return Result{LogPath: logPath}, criu.Error("restore", logPath, err)
	}
	if n.pid <= 0 {
		return Result{LogPath: logPath}, criu.Error("restore", logPath, fmt.Errorf("CRIU reported no restored pid"))
	}
	return Result{PID: n.pid, LogPath: logPath}, nil
}

func inheritKeys(c *gocriu.Criu, files map[string]*os.File) {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.AddInheritFd(k, files[k])
	}
}

// FileKey is CRIU's inherit-fd key for a regular file: its path relative
// to the root mount (CRIU's reg_file_path), so "/a/b" becomes "a/b".
func FileKey(path string) string { return filepath.Clean(path)[1:] }

type notify struct {
	gocriu.NoNotify
	beforeResume func(pid int) error
	pid          int
	hookErr      error
}

func (n *notify) PostRestore(pid int32) error {
	n.pid = int(pid)
	if n.beforeResume == nil {
		return nil
	}
	n.hookErr = n.beforeResume(n.pid)
	return n.hookErr
}

func ptr[T any](v T) *T { return &v }
