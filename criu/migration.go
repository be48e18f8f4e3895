package criu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// CPUInfoFile is what `criu cpuinfo dump` writes.
const CPUInfoFile = "cpuinfo.img"

// PageServerLog is the page server's log inside its work directory.
const PageServerLog = "page-server.log"

// RestoreFeatures are the kernel features a migration compares: a tree
// dumped where one is present may need it to be restored.
var RestoreFeatures = []string{
	"can_map_vdso", "cgroupns", "clone3_set_tid", "fdinfo_lock", "get_rseq_conf",
	"memfd_hugetlb", "ns_pid", "openat2", "seccomp_filters", "seccomp_suspend",
	"sk_unix_file", "tcp_half_closed", "timens", "timerfd", "userns",
}

// CPUInfo returns the `criu cpuinfo dump` image of this host; dir is a
// scratch directory under the caller's state root.
func (b Binary) CPUInfo(ctx context.Context, dir string) ([]byte, error) {
	if out, err := b.command(ctx, "cpuinfo", "dump", "-D", dir); err != nil {
		return nil, fmt.Errorf("criu cpuinfo dump: %v: %s", err, lastLine(out))
	}
	p := filepath.Join(dir, CPUInfoFile)
	defer os.Remove(p)
	return os.ReadFile(p)
}

// CheckCPUInfo runs `criu cpuinfo check` against another host's image,
// written into the scratch directory dir. A refusal is FailedPrecondition.
func (b Binary) CheckCPUInfo(ctx context.Context, dir string, image []byte) error {
	p := filepath.Join(dir, CPUInfoFile)
	if err := os.WriteFile(p, image, 0o600); err != nil {
		return err
	}
	defer os.Remove(p)
	if out, err := b.command(ctx, "cpuinfo", "check", "-D", dir); err != nil {
		return fmt.Errorf("criu cpuinfo check: %s: %w", lastLine(out), errdefs.ErrFailedPrecondition)
	}
	return nil
}

var (
	featuresOnce sync.Once
	features     []string
)

// Features returns which of RestoreFeatures this kernel has. They are
// probed once per process, four at a time (each probe is a criu run).
func (b Binary) Features(ctx context.Context) []string {
	featuresOnce.Do(func() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for _, f := range RestoreFeatures {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				// A cancelled first caller must not leave the cache short.
				if ok, _ := b.HasFeature(context.WithoutCancel(ctx), f); ok {
					mu.Lock()
					features = append(features, f)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		sort.Strings(features)
	})
	return features
}

// PageServer is a running `criu page-server`.
type PageServer struct{ g *group }

// PageServer starts `criu page-server` on an already connected socket:
// it writes the pages it receives into dir and exits when the dumping
// side disconnects. Wait must be called.
func (b Binary) PageServer(dir, workDir string, sock *os.File) (*PageServer, error) {
	cmd := exec.Command(b.Path, "page-server", "-D", dir, "-W", workDir,
		"--ps-socket", "3", "-o", PageServerLog, "-v4")
	cmd.ExtraFiles = []*os.File{sock}
	g, err := b.Helpers.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start criu page-server: %w", err)
	}
	return &PageServer{g: g}, nil
}

// Wait waits for the page server to exit and ends whatever it left; when
// ctx ends or timeout passes first, its process group is killed.
func (p *PageServer) Wait(ctx context.Context, timeout time.Duration) error {
	err := p.g.wait(ctx, timeout)
	if eerr := p.g.end(err == nil); err == nil {
		err = eerr
	}
	return err
}

// PageServerError explains a page server's failed exit from its log.
func PageServerError(workDir string, err error) error {
	return Error("page-server", filepath.Join(workDir, PageServerLog), err)
}

// commandTimeout bounds CRIU's short commands (check, cpuinfo, --version).
const commandTimeout = 2 * time.Minute

// command runs a short criu command in its own process group, under the
// watchdog, and returns its combined output.
func (b Binary) command(ctx context.Context, args ...string) (string, error) {
	cmd := exec.Command(b.Path, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	g, err := b.Helpers.start(cmd)
	if err != nil {
		return "", err
	}
	timeout := commandTimeout
	if b.Timeout > 0 {
		timeout = min(timeout, b.Timeout)
	}
	err = g.wait(ctx, timeout)
	if eerr := g.end(err == nil); err == nil {
		err = eerr
	}
	return out.String(), err
}
