package criu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/keylock"
	"github.com/ckptd/ckptd/proc"
)

// Helpers owns every CRIU process ckptd starts: each runs in a process
// group of its own, recorded on disk while it lives, so that it and
// whatever it leaves behind (CRIU forks probe children and keeps them
// stopped; a killed CRIU's children hold its socket and image files) can be
// ended at once, by this ckptd or by the next one after a crash.
type Helpers struct {
	dir string // one file per live group, named by its PGID
	log *slog.Logger

	mu       sync.Mutex
	inFlight int
	locks    *keylock.Locks // see DumpKeys

	pipeMu    sync.Mutex // see RaisePipeMax
	pipeUsers int
}

// NewHelpers records groups under dir, which it creates.
func NewHelpers(dir string, log *slog.Logger) (*Helpers, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return &Helpers{dir: dir, log: log, locks: keylock.New()}, nil
}

// Busy reports whether a CRIU process of this ckptd is running.
func (h *Helpers) Busy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight > 0
}

// acquire takes the locks of keys (see DumpKeys); it gives up when ctx
// ends, so a client that has gone never gets its target frozen.
func (h *Helpers) acquire(ctx context.Context, keys []string) (func(), error) {
	unlock, err := h.locks.LockAll(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("waiting for CRIU: %w", err)
	}
	return unlock, nil
}

// DumpKeys names what a dump of the tree at root must not share with
// another dump running at the same time. CRIU's parasite, in a task whose
// /proc is not its PID namespace's (every task of a PID-namespaced
// workload), mounts its own proc at "proc.crtools" in the task's working
// directory: two dumps of trees working in one directory collide there
// ("Can't create a directory (-17)", then "Message reply from daemon is
// trimmed"), seen here with two workloads in "/". The key is each task's
// mount namespace and working directory.
func DumpKeys(root int) []string {
	var keys []string
	for _, pid := range proc.Tree(root) {
		mnt, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		cwd, err2 := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err1 == nil && err2 == nil {
			keys = append(keys, "cwd "+mnt+" "+cwd)
		}
	}
	return keys
}

// group is one started CRIU process and its process group.
type group struct {
	h      *Helpers
	name   string // for errors: "criu swrk"
	kill   func() error
	pgid   int
	exited chan struct{} // closed once cmd was waited for
	err    error         // cmd.Wait's, valid after exited
}

// start runs cmd in a new process group and records it.
func (h *Helpers) start(cmd *exec.Cmd) (*group, error) {
	h.mu.Lock()
	h.inFlight++
	h.mu.Unlock()
	if err := proc.StartGroup(cmd); err != nil {
		h.done()
		return nil, err
	}
	g := &group{h: h, name: strings.Join(cmd.Args[:min(2, len(cmd.Args))], " "), kill: cmd.Process.Kill,
		pgid: cmd.Process.Pid, exited: make(chan struct{})}
	if err := h.record(g.pgid); err != nil {
		h.log.Warn("record criu process group", "pgid", g.pgid, "err", err)
	}
	go func() {
		g.err = cmd.Wait()
		proc.Disown(g.pgid)
		close(g.exited)
	}()
	return g, nil
}

// wait waits for the helper to exit; when ctx ends or timeout passes
// first, it kills the group and fails.
func (g *group) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-g.exited:
		return g.err
	case <-ctx.Done():
		_ = proc.KillGroup(g.pgid)
		<-g.exited
		return fmt.Errorf("%s: %w", g.name, context.Cause(ctx))
	case <-t.C:
		_ = proc.KillGroup(g.pgid)
		<-g.exited
		return fmt.Errorf("%s: no exit within %s; killed: %w", g.name, timeout, errdefs.ErrDeadlineExceeded)
	}
}

func (h *Helpers) done() {
	h.mu.Lock()
	h.inFlight--
	h.mu.Unlock()
}

// end kills the whole group unless keep (a successful restore's tree may
// live in it), waits for the helper and for the group to be empty, and
// drops the record. Nothing CRIU had open is in use once it returns.
func (g *group) end(keep bool) error {
	defer g.h.done()
	if !keep {
		if err := proc.KillGroup(g.pgid); err != nil {
			g.h.log.Error("end criu", "pgid", g.pgid, "err", err)
		}
	}
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		// A helper that lingers after answering is ended alone.
		g.h.log.Warn("criu did not exit after its last answer; killing it", "pid", g.pgid)
		_ = g.kill()
		<-g.exited
	}
	if !keep {
		if left, err := proc.EndGroup(g.pgid, 10*time.Second); err != nil || len(left) > 0 {
			return fmt.Errorf("criu process group %d not ended: %s %v", g.pgid, proc.Describe(left), err)
		}
	}
	return g.h.unrecord(g.pgid)
}

func (h *Helpers) record(pgid int) error {
	st, err := proc.ReadStat(pgid)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(h.dir, strconv.Itoa(pgid)), []byte(strconv.FormatUint(st.StartTime, 10)+"\n"), 0o600)
}

func (h *Helpers) unrecord(pgid int) error {
	if err := os.Remove(filepath.Join(h.dir, strconv.Itoa(pgid))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// EndLeftovers ends the CRIU process groups a previous ckptd recorded and
// did not see end (it was killed, or the machine's OOM killer took it):
// such a CRIU may still hold a target frozen or write into a staging
// directory. Call it before anything under the state root is cleaned up.
// A group that does not end is reported; start-up goes on.
func (h *Helpers) EndLeftovers() {
	if err := h.putPipeMaxBack(); err != nil {
		h.log.Error("put back the fs.pipe-max-size a previous ckptd raised", "err", err)
	}
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		h.log.Error("read criu process records", "dir", h.dir, "err", err)
		return
	}
	for _, e := range entries {
		if e.Name() == pipeMaxRecord {
			continue // kept for its error above
		}
		pgid, err := strconv.Atoi(e.Name())
		if err != nil || pgid <= 1 {
			h.log.Warn("removing a stray file among criu process records", "file", e.Name())
			_ = os.Remove(filepath.Join(h.dir, e.Name()))
			continue
		}
		if members := proc.GroupMembers(pgid); len(members) > 0 && !leftBy(pgid, members, h.dir) {
			// The PGID was reused by somebody else's group since.
			h.log.Info("criu process record names a group that is not CRIU's any more", "pgid", pgid)
		} else if len(members) > 0 && !endsAlone(pgid, leftoverGrace) {
			// Killed mid-dump, CRIU can take its target with it (the task
			// is left inside CRIU's injected code), so it had its chance
			// to roll back on its own first.
			h.log.Warn("ending a CRIU left by a previous ckptd", "pgid", pgid, "processes", proc.Describe(members))
			if left, err := proc.EndGroup(pgid, 10*time.Second); err != nil || len(left) > 0 {
				h.log.Error("criu left by a previous ckptd did not end; its files stay", "pgid", pgid, "processes", proc.Describe(left), "err", err)
				continue
			}
		}
		if err := h.unrecord(pgid); err != nil {
			h.log.Error("remove criu process record", "pgid", pgid, "err", err)
		}
	}
}

// leftoverGrace is how long a CRIU whose ckptd died may take to roll back
// by itself: it notices its RPC peer is gone at its next notification and
// resumes or releases the target.
const leftoverGrace = 10 * time.Second

// endsAlone waits up to grace for group pgid to end by itself.
func endsAlone(pgid int, grace time.Duration) bool {
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(proc.GroupMembers(pgid)) == 0 {
			return true
		}
	}
	return false
}

// leftBy tells a recorded CRIU group from a stranger's that reuses its ID:
// the leader, if alive, must have the recorded start time; without a
// leader, a member must be a criu.
func leftBy(pgid int, members []proc.Stat, dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, strconv.Itoa(pgid)))
	start, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	for _, m := range members {
		if m.PID == pgid {
			return m.StartTime == start
		}
	}
	for _, m := range members {
		if m.Comm == "criu" {
			return true
		}
	}
	return false
}
