package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// imageSlack is room on the destination's disk beyond the memory itself:
// CRIU's other images, the writable layer, logs.
const imageSlack = 64 << 20

// offer describes target t for the destination's pre-flight. scratch is a
// directory under the state root for `criu cpuinfo dump`.
func (d *Daemon) offer(ctx context.Context, t *store.Target, req MigrateRequest, scratch string) (*migrate.Offer, error) {
	cpu, err := d.criu.CPUInfo(ctx, scratch)
	if err != nil {
		return nil, err
	}
	o := &migrate.Offer{
		SourceHost: d.host.Hostname, Target: t.TargetRef, Name: req.Name,
		CRIUVersion: d.criu.Version, Kernel: d.host.Kernel, CPUInfo: cpu,
		Features: d.criu.Features(ctx), Options: req.Options,
		PageStream: t.Kind != store.KindContainer,
		Streams:    d.pageStreams(migrate.MaxStreams),
		// A container too: runc hands CRIU a configuration file that leaves
		// it stopped (see restoreContainer).
		Fenced: !req.KeepSource,
	}
	tree := proc.Tree(t.PID)
	for _, pid := range tree {
		o.MemoryBytes += proc.RSS(pid)
	}
	if o.Rounds = precopyRounds(req, o.MemoryBytes); o.Rounds > 0 {
		o.PageStream = false // each round's pages go to the source's disk first
	}
	if req.Lazy {
		// Not fenced: the destination runs it while the source, frozen,
		// serves its pages.
		o.Lazy, o.Fenced, o.Rounds, o.PageStream = true, false, 0, true
	}
	switch t.Kind {
	case store.KindContainer:
		// Its files come from the base image and the saved writable layer.
		r, err := container.RefFromName(t.Name)
		if err != nil {
			return nil, err
		}
		src, err := d.images.Describe(ctx, r)
		if err != nil {
			return nil, err
		}
		o.Container = containerRecord(r, src)
		return o, nil
	case store.KindProcess:
		o.PIDs = tree
	}
	o.Files, err = d.neededFiles(tree)
	return o, err
}

// neededFiles lists what the tree's images will refer to by path, as the
// tree sees it, leaving out ckptd's own state (a workload's log is handed
// over by the restore) and the kernel's pseudo filesystems.
func (d *Daemon) neededFiles(tree []int) ([]migrate.FileNeed, error) {
	root := d.store.Layout().Root
	seen := map[string]bool{}
	var out []migrate.FileNeed
	for _, pid := range tree {
		uses, err := proc.Files(pid)
		if err != nil {
			return nil, err
		}
		for _, u := range uses {
			if seen[u.Path] || under(u.Path, root) || under(u.Path, "/proc") || under(u.Path, "/sys") || under(u.Path, "/dev") {
				continue
			}
			seen[u.Path] = true
			st, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "root", u.Path))
			if err != nil {
				continue // gone meanwhile; CRIU will say so if it matters
			}
			n := migrate.FileNeed{Path: u.Path, Use: u.Use, Dir: st.IsDir()}
			if st.Mode().IsRegular() {
				n.Size = st.Size()
			}
			out = append(out, n)
		}
	}
	return out, nil
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// preflight is the destination's side: every reason it cannot take o as
// ref, in the order an operator would fix them. scratch is a directory
// under the state root.
func (d *Daemon) preflight(ctx context.Context, o *migrate.Offer, ref store.TargetRef, scratch string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	src := criu.Binary{Version: o.CRIUVersion}
	if o.CRIUVersion > d.criu.Version {
		add("CRIU here is %s, older than the source's %s", d.criu.VersionString(), src.VersionString())
	}
	if err := d.criu.CheckCPUInfo(ctx, scratch, o.CPUInfo); err != nil {
		add("CPU: %v", err)
	}
	have := d.criu.Features(ctx)
	for _, f := range o.Features {
		if !slices.Contains(have, f) {
			add("kernel here (%s) lacks CRIU feature %q, which the source's (%s) has", d.host.Kernel, f, o.Kernel)
		}
	}
	if o.Lazy {
		if ok, detail := d.criu.HasFeature(ctx, "uffd-noncoop"); !ok {
			add("post-copy: this kernel lacks the userfaultfd CRIU's lazy restore needs (criu check --feature uffd-noncoop: %s)", detail)
		}
	}
	problems = append(problems, d.roomFor(o.MemoryBytes)...)
	for _, f := range o.Files {
		st, err := os.Stat(f.Path)
		switch {
		case err != nil:
			add("%s %s is missing here", f.Use, f.Path)
		case st.Mode().IsRegular() && st.Size() != f.Size:
			add("%s %s is %d bytes here, %d on the source", f.Use, f.Path, st.Size(), f.Size)
		case f.Dir != st.IsDir():
			add("%s %s is a different kind of file here", f.Use, f.Path)
		}
	}
	if err := d.targetFree(ctx, o, ref); err != nil {
		add("%s", errdefs.Message(err))
	}
	return problems
}

// roomFor checks free disk under the state root and available memory.
func (d *Daemon) roomFor(bytes int64) []string {
	var problems []string
	var fs unix.Statfs_t
	if err := unix.Statfs(d.store.Layout().Root, &fs); err != nil {
		problems = append(problems, fmt.Sprintf("free disk: %v", err))
	} else if free := int64(fs.Bavail) * fs.Bsize; free < bytes+imageSlack {
		problems = append(problems, fmt.Sprintf("%s has %s free, the checkpoint needs about %s",
			d.store.Layout().Root, mib(free), mib(bytes+imageSlack)))
	}
	if avail := memAvailable(); avail >= 0 && avail < bytes {
		problems = append(problems, fmt.Sprintf("%s of memory available, the workload uses %s", mib(avail), mib(bytes)))
	}
	return problems
}

// targetFree refuses to take a target over one that runs here.
func (d *Daemon) targetFree(ctx context.Context, o *migrate.Offer, ref store.TargetRef) error {
	switch ref.Kind {
	case store.KindWorkload:
		if t, err := d.store.GetTarget(ctx, ref.Key()); err == nil && d.alive(t) {
			return fmt.Errorf("workload %q runs here already (pid %d); migrate with --name: %w", ref.Name, t.PID, errdefs.ErrAlreadyExists)
		}
	case store.KindProcess:
		for _, pid := range o.PIDs {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				return fmt.Errorf("pid %d is in use here, and a host process restores into its original PIDs: %w", pid, errdefs.ErrFailedPrecondition)
			}
		}
	case store.KindContainer:
		r, err := container.RefFromName(ref.Name)
		if err != nil {
			return err
		}
		if _, err := d.ctrs.Get(ctx, r); err == nil {
			return fmt.Errorf("container %s exists here; migrate with --name: %w", r, errdefs.ErrAlreadyExists)
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		ci := o.Container
		return d.images.CheckImage(ctx, r.Namespace, container.Source{Image: ci.Image, ImageDigest: ci.ImageDigest, Snapshotter: ci.Snapshotter})
	}
	return nil
}

func memAvailable() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
