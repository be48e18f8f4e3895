// Package limits bounds a workload's memory and CPU through cgroups ckptd
// makes for it, under ckptd's own (cgroup v1's memory and cpu
// controllers, or v2's memory.max and cpu.max), as Podman's --memory and
// --cpus do.
package limits

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Limits are what a workload may use; zero fields are unbounded.
type Limits struct {
	Memory int64   `json:"memory,omitempty"` // bytes
	CPUs   float64 `json:"cpus,omitempty"`   // CPUs' worth of time
}

// cpuPeriod is the CFS period the quota is a share of (100 ms).
const cpuPeriod = 100000

// Validate refuses limits a kernel would refuse or that mean nothing.
func (l Limits) Validate() error {
	if l.Memory < 0 || l.Memory > 0 && l.Memory < 6<<20 {
		return fmt.Errorf("--memory %d bytes: want at least 6 MiB", l.Memory)
	}
	if l.CPUs < 0 || l.CPUs > 0 && l.CPUs < 0.01 || l.CPUs > 1024 {
		return fmt.Errorf("--cpus %g: want 0.01 to 1024", l.CPUs)
	}
	return nil
}

// Hierarchy is where ckptd makes workloads' cgroups: per controller, a
// directory under ckptd's own cgroup.
type Hierarchy struct {
	v2   bool
	dirs map[string]string // controller ("memory", "cpu"; "" on v2) -> ckptd's dir for workloads
	rel  map[string]string // the same, as a cgroup path (what CRIU's --cgroup-root takes)
}

// Open finds the memory and cpu controllers of this process's cgroups and
// names the directory workloads' cgroups go under (one per state root).
func Open(name string) (*Hierarchy, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{dirs: map[string]string{}, rel: map[string]string{}}
	for _, ctrl := range []string{"memory", "cpu"} {
		path, ok := own[ctrl]
		mount := filepath.Join("/sys/fs/cgroup", ctrl)
		if !ok {
			continue
		}
		if _, err := os.Stat(mount); err != nil {
			continue
		}
		h.rel[ctrl] = filepath.Join(path, name)
		h.dirs[ctrl] = filepath.Join(mount, path, name)
	}
	if len(h.dirs) == 2 {
		return h, nil
	}
	if path, ok := own[""]; ok {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			h = &Hierarchy{v2: true, dirs: map[string]string{"": filepath.Join("/sys/fs/cgroup", path, name)},
				rel: map[string]string{"": filepath.Join(path, name)}}
			return h, nil
		}
	}
	return nil, errors.New("no cgroup memory and cpu controllers for --memory and --cpus")
}

// Apply makes workload's cgroups with l and, if pid > 0, moves pid into
// them (its children follow).
func (h *Hierarchy) Apply(workload string, pid int, l Limits) error {
	for ctrl, dir := range h.dirs {
		d := filepath.Join(dir, workload)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		for file, value := range h.settings(ctrl, l) {
			if err := write(filepath.Join(d, file), value); err != nil {
				return fmt.Errorf("limits: %s: %w", file, err)
			}
		}
		if pid > 0 {
			if err := write(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("limits: move %d: %w", pid, err)
			}
		}
	}
	return nil
}

func (h *Hierarchy) settings(ctrl string, l Limits) map[string]string {
	s := map[string]string{}
	memory, quota := "-1", "-1"
	if h.v2 {
		memory, quota = "max", "max"
	}
	if l.Memory > 0 {
		memory = strconv.FormatInt(l.Memory, 10)
	}
	if l.CPUs > 0 {
		quota = strconv.FormatInt(int64(l.CPUs*cpuPeriod), 10)
	}
	switch {
	case h.v2:
		s["memory.max"] = memory
		s["cpu.max"] = quota + " " + strconv.Itoa(cpuPeriod)
	case ctrl == "memory":
		s["memory.limit_in_bytes"] = memory
	case ctrl == "cpu":
		s["cpu.cfs_period_us"] = strconv.Itoa(cpuPeriod)
		s["cpu.cfs_quota_us"] = quota
	}
	return s
}

// Roots are the workload's cgroups per controller, for CRIU's
// --cgroup-root: a restored tree goes into them, not into the cgroups of
// the tree it was dumped from.
func (h *Hierarchy) Roots(workload string) map[string]string {
	out := map[string]string{}
	for ctrl, rel := range h.rel {
		out[ctrl] = filepath.Join(rel, workload)
	}
	return out
}

// Remove removes workload's cgroups once its tasks are gone; a cgroup
// that still has tasks (EBUSY) stays.
func (h *Hierarchy) Remove(workload string) error {
	var errs []error
	for _, dir := range h.dirs {
		if err := os.Remove(filepath.Join(dir, workload)); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EBUSY) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownCgroups reads this process's cgroup per controller ("" for v2's).
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			out[ctrl] = parts[2]
		}
	}
	return out, sc.Err()
}

func write(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	return errors.Join(err, f.Close())
}
