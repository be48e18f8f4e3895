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
	"syscall"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
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

// PageServer starts `criu page-server` on an already connected socket:
// it writes the pages it receives into dir and exits when the dumping
// side disconnects. It dies with ckptd.
func (b Binary) PageServer(ctx context.Context, dir, workDir string, sock *os.File) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, b.Path, "page-server", "-D", dir, "-W", workDir,
		"--ps-socket", "3", "-o", PageServerLog, "-v4")
	cmd.ExtraFiles = []*os.File{sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	proc.SpawnMu.Lock()
	err := cmd.Start()
	proc.SpawnMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("start criu page-server: %w", err)
	}
	return cmd, nil
}

// PageServerError explains a page server's failed exit from its log.
func PageServerError(workDir string, err error) error {
	return Error("page-server", filepath.Join(workDir, PageServerLog), err)
}

// command runs criu with args, serialized with other spawns, and returns
// its combined output.
func (b Binary) command(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.Path, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	proc.SpawnMu.Lock() // see Do
	err := cmd.Start()
	proc.SpawnMu.Unlock()
	if err == nil {
		err = cmd.Wait()
	}
	return out.String(), err
}
