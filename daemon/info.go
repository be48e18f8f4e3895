package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Check is one line of `ckptctl check`.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// VersionInfo describes the daemon and what it runs on.
type VersionInfo struct {
	Daemon, Go, CRIU, CRIUPath, Kernel string
	// The daemon's footprint now.
	Goroutines, OpenFDs, RSSBytes int64
}

func (d *Daemon) Version(ctx context.Context) VersionInfo {
	fds, _ := os.ReadDir("/proc/self/fd")
	return VersionInfo{Daemon: Version, Go: runtime.Version(), CRIU: d.criu.VersionString(), CRIUPath: d.criu.Path, Kernel: d.host.Kernel,
		Goroutines: int64(runtime.NumGoroutine()), OpenFDs: int64(len(fds)), RSSBytes: proc.RSS(os.Getpid())}
}

// criuFeatures are the CRIU features worth reporting, with what needs them.
var criuFeatures = []struct{ name, needs string }{
	{"mem_dirty_track", "CRIU pre-dump (each dump reads all memory; ckptd still stores only what changed)"},
	{"uffd-noncoop", "lazy (post-copy) restore"},
	{"network_lock_nftables", "network locking with nftables"},
	{"timens", "time namespaces"},
}

// Check reports the daemon's CRIU and the kernel features CRIU can use.
func (d *Daemon) Check(ctx context.Context) []Check {
	out := []Check{
		{Name: "criu", OK: true, Detail: d.criu.Path + " " + d.criu.VersionString() + " (criu check passed at start)"},
		{Name: "kernel", OK: true, Detail: d.host.Kernel},
		d.checkContainerd(ctx),
	}
	uffd := false
	for _, f := range criuFeatures {
		ok, detail := d.criu.HasFeature(ctx, f.name)
		uffd = uffd || f.name == "uffd-noncoop" && ok
		c := Check{Name: f.name, OK: ok, Detail: "supported"}
		if !ok {
			c.Detail = "unsupported on this kernel: no " + f.needs
			if detail != "" {
				c.Detail += " (" + detail + ")"
			}
		}
		out = append(out, c)
	}
	peer := Check{Name: "migration", OK: d.peer != nil, Detail: "peer credentials loaded; ckptctl migrate works; " + d.peerInfo}
	if d.peer == nil {
		peer.Detail = "no peer credentials (peer_certs): ckptctl migrate is off"
	}
	inc := Check{Name: "incremental", OK: true, Detail: fmt.Sprintf("checkpoints with a parent store only the pages that changed, in chains of at most %d", d.chainDepth)}
	if d.chainDepth == 0 {
		inc.Detail = "off (chain_depth 0): every checkpoint is stored whole"
	}
	out = append(out, inc, peer, checkLazy(uffd))
	return append(out, checkBreakpoints(), checkSockets(d.criu))
}

func checkBreakpoints() Check {
	ok, err := criu.HardwareBreakpoints()
	switch {
	case err != nil:
		return Check{Name: "hardware-breakpoints", Detail: "unknown: " + err.Error()}
	case !ok:
		return Check{Name: "hardware-breakpoints", Detail: "they never fire here: CRIU takes its slower path to stop tasks after the parasite (CRIU 4.1 hung on such hosts)"}
	}
	return Check{Name: "hardware-breakpoints", OK: true, Detail: "they fire: CRIU uses them to stop tasks after the parasite"}
}

// checkSockets says whether TCP and UDP sockets can be dumped: CRIU 4.1
// asked every socket for SO_PASSCRED, which kernels >= 6.16 refuse for
// anything but unix and netlink sockets.
func checkSockets(bin criu.Binary) Check {
	if bin.Version < 40200 {
		return Check{Name: "inet-sockets", Detail: "CRIU " + bin.VersionString() + " cannot dump TCP or UDP sockets on kernels >= 6.16; run 'make deps'"}
	}
	return Check{Name: "inet-sockets", OK: true, Detail: "TCP and UDP sockets dump (listening ones always; established ones with --tcp-established)"}
}

// checkLazy says whether migrate --lazy can work here.
func checkLazy(uffd bool) Check {
	c := Check{Name: "lazy-migration", Detail: "off: no userfaultfd (uffd-noncoop) for CRIU's lazy restore"}
	if !uffd {
		return c
	}
	size, err := criu.PipeMax()
	switch {
	case err != nil:
		c.Detail = "off: fs.pipe-max-size: " + err.Error()
	case size >= criu.LazyPipeMax || proc.HasSysResource():
		c.OK, c.Detail = true, fmt.Sprintf("on: fs.pipe-max-size is %d bytes, enough for CRIU's lazy dump", size)
	case os.Geteuid() != 0:
		c.Detail = fmt.Sprintf("off: fs.pipe-max-size is %d bytes, below what CRIU's lazy dump needs (%d), and only root may raise it", size, criu.LazyPipeMax)
	default:
		c.OK, c.Detail = true, fmt.Sprintf("on: fs.pipe-max-size is %d bytes; a lazy dump raises it to %d while it runs and puts it back (CRIU's page pipe needs it, lacking CAP_SYS_RESOURCE)", size, criu.LazyPipeMax)
	}
	return c
}

func (d *Daemon) checkContainerd(ctx context.Context) Check {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := d.ctrs.Version(ctx)
	if err != nil {
		return Check{Name: "containerd", Detail: fmt.Sprintf("%v (ctr: targets unavailable)", err)}
	}
	return Check{Name: "containerd", OK: true, Detail: fmt.Sprintf("%s at %s", v, d.ctrdAddr)}
}

// Inspection is a checkpoint's record and what its images hold.
type Inspection struct {
	Checkpoint *store.Checkpoint
	Processes  []images.Process
	Children   []string
	Needs      []Need // empty for a container, whose paths are in its own root
	// ChainDepth is how many checkpoints an incremental one reads pages
	// from; ChainProblem says why that chain cannot serve a restore.
	ChainDepth   int
	ChainProblem string
}

// Need is a file a restore reopens by path, with what is wrong with it on
// this host ("" when nothing).
type Need struct {
	images.Need
	Problem string
}

// Inspect reads a checkpoint's images: process tree, commands, memory,
// open files and sockets.
func (d *Daemon) Inspect(ctx context.Context, ref string) (*Inspection, error) {
	c, release, err := d.acquire(ctx, ref, false)
	if err != nil {
		return nil, err
	}
	defer release()
	procs, err := images.Read(d.store.Dir(c.ID))
	if err != nil {
		return nil, err
	}
	kids, err := d.store.Children(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	in := &Inspection{Checkpoint: c, Processes: procs}
	if c.Incremental != nil {
		if in.ChainDepth, err = d.store.ChainDepth(ctx, c); err == nil {
			err = d.store.Present(ctx, c)
		}
		if err != nil {
			in.ChainProblem = err.Error()
		}
	}
	if c.Container == nil && !images.OwnMounts(d.store.Dir(c.ID)) {
		needs, err := images.Needs(d.store.Dir(c.ID))
		if err != nil {
			return nil, err
		}
		for _, n := range needs {
			need := Need{Need: n}
			if n.Path != c.Target.LogPath { // a workload's log is handed in anew
				need.Problem = n.Problem()
			}
			in.Needs = append(in.Needs, need)
		}
	}
	for _, k := range kids {
		in.Children = append(in.Children, k.ID)
	}
	return in, nil
}
