// Package freezer freezes process trees through the cgroup freezer, so that
// several trees stop at one instant and stay stopped while CRIU dumps them
// one by one: CRIU, given a cgroup already frozen (--freeze-cgroup), seizes
// its tasks there and leaves it frozen when it lets them go.
package freezer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// Hierarchy is one ckptd's own cgroups in the freezer hierarchy (cgroup
// v1's freezer controller, or v2's cgroup.freeze).
type Hierarchy struct {
	mount string // the hierarchy's root: /sys/fs/cgroup/freezer, or /sys/fs/cgroup on v2
	dir   string // this ckptd's: <mount>/<name>
	v2    bool
}

// Open finds the freezer and names this ckptd's cgroups name (one per
// state root, so that ckptds beside each other sweep only their own).
func Open(name string) (*Hierarchy, error) {
	return open("/sys/fs/cgroup", name)
}

// NameFor names the cgroups of the ckptd whose state root is root.
func NameFor(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	sum := sha256.Sum256([]byte(root))
	return "ckptd-" + hex.EncodeToString(sum[:6])
}

func open(base, name string) (*Hierarchy, error) {
	if _, err := os.Stat(filepath.Join(base, "freezer", "cgroup.procs")); err == nil {
		m := filepath.Join(base, "freezer")
		return &Hierarchy{mount: m, dir: filepath.Join(m, name)}, nil
	}
	if _, err := os.Stat(filepath.Join(base, "cgroup.subtree_control")); err == nil {
		return &Hierarchy{mount: base, dir: filepath.Join(base, name), v2: true}, nil
	}
	return nil, fmt.Errorf("no cgroup freezer under %s: %w", base, errdefs.ErrFailedPrecondition)
}

// Cgroup is one tree's freezer cgroup.
type Cgroup struct {
	Path   string // what CRIU's --freeze-cgroup takes
	origin string // where its tasks came from, under the hierarchy's mount
	h      *Hierarchy
}

// Join moves the tree at root into a new cgroup name (a path under this
// ckptd's). Every task of the tree must share the root's cgroup, which is
// where Dissolve puts them back.
func (h *Hierarchy) Join(ctx context.Context, name string, root int) (*Cgroup, error) {
	origin, err := h.cgroupOf(root)
	if err != nil {
		return nil, err
	}
	c := &Cgroup{Path: filepath.Join(h.dir, name), origin: origin, h: h}
	if err := os.MkdirAll(c.Path, 0o755); err != nil {
		return nil, fmt.Errorf("freezer: %w", err)
	}
	// A task forked while its parent moves may stay behind: go round until
	// the whole tree is in.
	for range 100 {
		out, err := c.outside(root)
		if err != nil || len(out) == 0 {
			if err != nil {
				err = errors.Join(err, c.Dissolve(ctx))
			}
			return c, err
		}
		for _, pid := range out {
			if at, err := h.cgroupOf(pid); err != nil || at != origin && at != c.rel() {
				err = errors.Join(fmt.Errorf("process %d of the tree of %d is in freezer cgroup %q, not %q: ckptd freezes a tree only from one cgroup: %w", pid, root, at, origin, errdefs.ErrFailedPrecondition), err)
				return nil, errors.Join(err, c.Dissolve(ctx))
			}
			if err := writeFile(filepath.Join(c.Path, "cgroup.procs"), strconv.Itoa(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
				return nil, errors.Join(fmt.Errorf("freezer: move %d: %w", pid, err), c.Dissolve(ctx))
			}
		}
	}
	return nil, errors.Join(fmt.Errorf("freezer: the tree of %d forks faster than it can be moved", root), c.Dissolve(ctx))
}

// outside lists the tree's tasks not yet in c.
func (c *Cgroup) outside(root int) ([]int, error) {
	in, err := c.Tasks()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range proc.Tree(root) {
		if !slices.Contains(in, pid) {
			out = append(out, pid)
		}
	}
	return out, nil
}

func (c *Cgroup) rel() string {
	r, _ := filepath.Rel(c.h.mount, c.Path)
	return "/" + r
}

// Freeze freezes the cgroup and waits until every task is frozen.
func (c *Cgroup) Freeze(ctx context.Context) error {
	if err := c.setFrozen(true); err != nil {
		return err
	}
	for {
		frozen, err := c.frozen()
		if err != nil || frozen {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("freezer: %s did not freeze: %w", c.Path, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Thaw lets the cgroup's tasks run again.
func (c *Cgroup) Thaw() error { return c.setFrozen(false) }

// Kill ends every task of the cgroup, frozen or not, and waits until the
// cgroup is empty.
func (c *Cgroup) Kill(ctx context.Context) error {
	for {
		tasks, err := c.Tasks()
		if err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
		for _, pid := range tasks {
			syscall.Kill(pid, syscall.SIGKILL) // gone already: ESRCH, nothing to do
		}
		// A frozen task takes its SIGKILL only once thawed.
		if err := c.Thaw(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("freezer: tasks of %s outlived SIGKILL: %w", c.Path, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Dissolve thaws the cgroup, puts its tasks back where they came from and
// removes it.
func (c *Cgroup) Dissolve(ctx context.Context) error {
	if err := c.Thaw(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := c.h.remove(ctx, c.Path, filepath.Join(c.h.mount, c.origin)); err != nil {
		return err
	}
	// Its parents up to this ckptd's own go once empty; a busy one stays
	// (a member not yet dissolved).
	for dir := filepath.Dir(c.Path); strings.HasPrefix(dir, c.h.dir); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// Tasks lists the processes in the cgroup.
func (c *Cgroup) Tasks() ([]int, error) { return readProcs(c.Path) }

func (c *Cgroup) setFrozen(frozen bool) error {
	file, value := "freezer.state", "THAWED"
	if c.h.v2 {
		file, value = "cgroup.freeze", "0"
		if frozen {
			value = "1"
		}
	} else if frozen {
		value = "FROZEN"
	}
	if err := writeFile(filepath.Join(c.Path, file), value); err != nil {
		return fmt.Errorf("freezer: %w", err)
	}
	return nil
}

func (c *Cgroup) frozen() (bool, error) {
	if c.h.v2 {
		data, err := os.ReadFile(filepath.Join(c.Path, "cgroup.events"))
		return strings.Contains(string(data), "frozen 1"), err
	}
	data, err := os.ReadFile(filepath.Join(c.Path, "freezer.state"))
	return strings.TrimSpace(string(data)) == "FROZEN", err
}

// Sweep thaws and removes every cgroup this ckptd left (it was killed
// while trees were frozen), putting their tasks back in the hierarchy's
// root. It returns the tasks it let go.
func (h *Hierarchy) Sweep(ctx context.Context) ([]int, error) {
	var freed []int
	var dirs []string
	err := filepath.WalkDir(h.dir, func(p string, e os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("freezer: %w", err)
	}
	// Deepest first: a cgroup is removed only once it has no children.
	slices.Reverse(dirs)
	for _, d := range dirs { // this ckptd's own dir too
		c := &Cgroup{Path: d, h: h}
		tasks, _ := c.Tasks()
		freed = append(freed, tasks...)
		if err := c.Thaw(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return freed, err
		}
		if err := h.remove(ctx, d, h.mount); err != nil {
			return freed, err
		}
	}
	return freed, nil
}

// remove moves the tasks of dir into dest and removes dir.
func (h *Hierarchy) remove(ctx context.Context, dir, dest string) error {
	for {
		tasks, err := readProcs(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("freezer: %w", err)
		}
		for _, pid := range tasks {
			if err := writeFile(filepath.Join(dest, "cgroup.procs"), strconv.Itoa(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("freezer: move %d back: %w", pid, err)
			}
		}
		err = os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("freezer: %w", err)
		}
		// A task exiting, or forked as it was moved: go round.
		select {
		case <-ctx.Done():
			return fmt.Errorf("freezer: remove %s: %w", dir, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// cgroupOf is pid's cgroup in this hierarchy, as /proc/PID/cgroup says.
func (h *Hierarchy) cgroupOf(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, errdefs.ErrNotFound)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if h.v2 && parts[0] == "0" || !h.v2 && slices.Contains(strings.Split(parts[1], ","), "freezer") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("process %d: no freezer cgroup in /proc/%d/cgroup", pid, pid)
}

func readProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	return errors.Join(err, f.Close())
}
