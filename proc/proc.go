// Package proc reads the few facts ckptd needs about processes from /proc.
package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// SpawnMu is held while ckptd starts a child, so that the orphan reaper
// never reaps a child between its start and its registration (see
// StartGroup), and a child never inherits a descriptor meant for another.
var SpawnMu sync.Mutex

// Stat is the part of /proc/PID/stat ckptd uses.
type Stat struct {
	PID       int
	Comm      string
	State     byte // R, S, D, T (stopped), t (traced), Z (zombie), ...
	PPID      int
	PGID      int
	StartTime uint64 // clock ticks after boot
}

// ReadStat parses /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return parseStat(pid, string(b))
}

func parseStat(pid int, s string) (Stat, error) {
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return Stat{PID: pid, Comm: s[open+1 : end], State: f[0][0], PPID: ppid, PGID: pgid, StartTime: start}, nil
}

// Alive reports whether pid runs and, when startTime is not zero, is still
// the same process (not a reused PID). Zombies are not alive.
func Alive(pid int, startTime uint64) bool {
	st, err := ReadStat(pid)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return false
	}
	return startTime == 0 || st.StartTime == startTime
}

// PIDs lists the processes of this PID namespace.
func PIDs() []int {
	entries, _ := os.ReadDir("/proc")
	out := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// ThreadStates returns the state of every thread of pid.
func ThreadStates(pid int) []byte {
	tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	out := make([]byte, 0, len(tids))
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, tid.Name()))
		if err != nil {
			continue
		}
		if st, err := parseStat(pid, string(b)); err == nil {
			out = append(out, st.State)
		}
	}
	return out
}

// Tree returns pid and all its descendants (threads' children included).
func Tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, Children(out[i])...)
	}
	return out
}

// Children returns the direct children of pid.
func Children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Cmdline returns the argv of pid.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}
