// Package restorer brings a process tree back from CRIU images.
package restorer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"github.com/checkpoint-restore/go-criu/v8/stats"

	"github.com/ckptd/ckptd/criu"
)

// LogFile is the name of CRIU's restore log inside the work directory.
const LogFile = "restore.log"

// Options must match what the tree was dumped with.
type Options struct {
	TCPEstablished bool
	TCPClose       bool // restore established connections closed: their peers are gone
	FileLocks      bool
	ExtUnixSk      bool
	ShellJob       bool
	ConfigFile     string // CRIU configuration file; empty: the daemon's
	// LeaveStopped leaves the restored tree stopped (SIGSTOP): a migration
	// resumes it only once the source confirms its copy is gone.
	LeaveStopped bool
	// CgroupRoots puts the tree's cgroup of a controller elsewhere
	// (CRIU's --cgroup-root CONTROLLER:PATH): a group's member was dumped
	// from the freezer cgroup that froze it, not where it belongs.
	CgroupRoots map[string]string
}

// Request is one restore.
type Request struct {
	ImagesDir string // read only: restores never write into a checkpoint
	WorkDir   string // restore.log and stats-restore go here
	Options   Options
	// Inherit hands open files to the restored tree in place of the ones
	// it had, keyed by CRIU's inherit-fd key (see FileKey).
	Inherit map[string]*os.File
	// MemoryBytes is the size of the tree's memory, for the watchdog.
	MemoryBytes int64
	// BeforeResume runs when the tree is restored but not yet running; an
	// error makes CRIU kill the restored tree and fail the restore.
	BeforeResume func(pid int) error
	// Launch starts CRIU elsewhere (a shell job's new terminal session).
	// The restored root is then CRIU's child, and once CRIU exits the
	// nearest subreaper's: this process, if it is one.
	Launch criu.Launcher
	// LazyPages, when set, is a socket connected to the source's page
	// server: the tree is restored without its lazy pages, which a
	// `criu lazy-pages` daemon (Result.Lazy) fetches from there; its log
	// goes to LazyLog.
	LazyPages *os.File
	LazyLog   string
}

// Result is what a successful restore reports.
type Result struct {
	// PID is the host PID of the restored root, a child of this process
	// (see Request.Launch);
	// after a failure, that of the root CRIU had created, if it got so far.
	PID     int
	LogPath string
	// Lazy is the daemon filling the tree's memory (Request.LazyPages);
	// the caller ends it.
	Lazy *criu.LazyPages
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
		RstSibling:     ptr(req.Launch == nil),
		TcpEstablished: ptr(req.Options.TCPEstablished),
		TcpClose:       ptr(req.Options.TCPClose),
		FileLocks:      ptr(req.Options.FileLocks),
		ExtUnixSk:      ptr(req.Options.ExtUnixSk),
		ShellJob:       ptr(req.Options.ShellJob),
		LeaveStopped:   ptr(req.Options.LeaveStopped),
	}
	if !req.Options.TCPEstablished {
		// Nothing is in TCP repair, so nothing needs the network locked;
		// locking a namespace of its own runs iptables-restore twice
		// each way, about 60 ms of a restore here.
		opts.NetworkLock = rpc.CriuNetworkLockMethod_SKIP.Enum()
	}
	if cfg := cmp.Or(req.Options.ConfigFile, r.bin.ConfigFile); cfg != "" {
		opts.ConfigFile = ptr(cfg)
	}
	for ctrl, path := range req.Options.CgroupRoots {
		opts.CgRoot = append(opts.CgRoot, &rpc.CgroupRoot{Ctrl: ptr(ctrl), Path: ptr(path)})
	}
	files := inherit(opts, req.Inherit)
	var lazy *criu.LazyPages
	if req.LazyPages != nil {
		if lazy, err = r.startLazy(ctx, req); err != nil {
			return Result{LogPath: logPath}, err
		}
		opts.LazyPages = ptr(true)
	}
	timeout := r.bin.Deadline(req.MemoryBytes)
	r.log.Debug("criu restore", "images", req.ImagesDir, "work", req.WorkDir, "timeout", timeout)
	pid := 0
	start := time.Now()
	var restored, hooked time.Time
	_, err = r.bin.Run(ctx, criu.Call{
		Op: "restore", Type: rpc.CriuReqType_RESTORE, Opts: opts, LogPath: logPath, Files: files, Timeout: timeout, Launch: req.Launch,
		Notify: func(script string, p int32) error {
			if p > 0 {
				// setup-namespaces names the root as soon as it exists.
				pid = int(p)
			}
			if script != "post-restore" || req.BeforeResume == nil {
				return nil
			}
			restored = time.Now()
			defer func() { hooked = time.Now() }()
			return req.BeforeResume(pid)
		},
	})
	if err == nil && !restored.IsZero() {
		attrs := []any{"pid", pid, "criu_until_post_restore", restored.Sub(start),
			"before_resume", hooked.Sub(restored), "criu_after", time.Since(hooked)}
		if st, serr := stats.CriuGetRestoreStats(work); serr == nil {
			attrs = append(attrs, "forking_us", st.GetForkingTime(), "restore_us", st.GetRestoreTime(), "pages_restored", st.GetPagesRestored())
		}
		r.log.Debug("criu restore phases", attrs...)
	}
	if err != nil {
		r.endLazy(lazy)
		var nerr *criu.NotifyError
		if errors.As(err, &nerr) {
			err = nerr.Err
		}
		return Result{PID: pid, LogPath: logPath}, err
	}
	if pid <= 0 {
		r.endLazy(lazy)
		return Result{LogPath: logPath}, criu.Error("restore", logPath, fmt.Errorf("CRIU reported no restored pid"))
	}
	if req.Options.TCPClose {
		if err := criu.UnlockTCP(req.ImagesDir); err != nil {
			r.log.Warn("remove the rules CRIU left for connections restored closed", "err", err)
		}
	}
	return Result{PID: pid, LogPath: logPath, Lazy: lazy}, nil
}

// startLazy starts the lazy-pages daemon the restore will hand the tree's
// memory to, and waits until it listens in the work directory.
func (r *Restorer) startLazy(ctx context.Context, req Request) (*criu.LazyPages, error) {
	lazy, err := r.bin.LazyPages(req.ImagesDir, req.WorkDir, req.LazyLog, req.LazyPages)
	if err != nil {
		return nil, err
	}
	if err := lazy.Ready(ctx, req.WorkDir); err != nil {
		return nil, errors.Join(err, lazy.End())
	}
	return lazy, nil
}

// endLazy ends the daemon of a failed restore, whose tree CRIU has
// ended; the restore's error says why, the daemon's is logged.
func (r *Restorer) endLazy(l *criu.LazyPages) {
	if l == nil {
		return
	}
	if err := l.End(); err != nil {
		r.log.Warn("lazy-pages daemon of a failed restore", "err", err)
	}
}

// inherit lists files in key order as the helper's descriptors 4, 5, ...
// and tells CRIU which key each one replaces.
func inherit(opts *rpc.CriuOpts, files map[string]*os.File) []*os.File {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*os.File, 0, len(keys))
	for i, k := range keys {
		opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{Key: ptr(k), Fd: ptr(int32(4 + i))})
		out = append(out, files[k])
	}
	return out
}

// FileKey is CRIU's inherit-fd key for a regular file: its path relative
// to the root mount (CRIU's reg_file_path), so "/a/b" becomes "a/b".
func FileKey(path string) string { return filepath.Clean(path)[1:] }

func ptr[T any](v T) *T { return &v }
