package proc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileUse is a path a process depends on: CRIU records these by path and
// reopens them on restore, so they must exist wherever it restores.
type FileUse struct {
	Path string
	Use  string // "executable", "mapped", "open", "cwd"
}

// Files lists the executable, working directory, mapped files and open
// regular files of pid, each path once. Deleted files and what is not a
// path on a filesystem (pipes, sockets, anonymous memory) are left out.
func Files(pid int) ([]FileUse, error) {
	base := filepath.Join("/proc", strconv.Itoa(pid))
	seen := map[string]bool{}
	var out []FileUse
	add := func(p, use string) {
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, FileUse{Path: p, Use: use})
	}
	exe, err := os.Readlink(filepath.Join(base, "exe"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	add(exe, "executable")
	if cwd, err := os.Readlink(filepath.Join(base, "cwd")); err == nil {
		add(cwd, "cwd")
	}
	maps, err := os.Open(filepath.Join(base, "maps"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	defer maps.Close()
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// address perms offset dev inode path
		if f := strings.SplitN(sc.Text(), " ", 6); len(f) == 6 {
			add(strings.TrimSpace(f[5]), "mapped")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("process %d maps: %w", pid, err)
	}
	fds, err := os.ReadDir(filepath.Join(base, "fd"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	for _, fd := range fds {
		link := filepath.Join(base, "fd", fd.Name())
		p, err := os.Readlink(link)
		if err != nil {
			continue // closed meanwhile
		}
		if st, err := os.Stat(link); err == nil && st.Mode().IsRegular() {
			add(p, "open")
		}
	}
	return out, nil
}

// RSS is the resident memory of pid in bytes (VmRSS), 0 if unknown.
func RSS(pid int) int64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TreeRSS is the resident memory of pid and its descendants in bytes.
func TreeRSS(pid int) int64 {
	var n int64
	for _, p := range Tree(pid) {
		n += RSS(p)
	}
	return n
}

// capSysResource is CAP_SYS_RESOURCE's bit in the capability sets.
const capSysResource = 24

// ForeignUID returns the uid of a task of pid's tree whose real, effective
// or saved uid differs from this process's, and whether there is one.
func ForeignUID(root int) (pid, uid int, found bool) {
	self := os.Geteuid()
	for _, p := range Tree(root) {
		for _, u := range statusFields(p, "Uid:") {
			if v, err := strconv.Atoi(u); err == nil && v != self {
				return p, v, true
			}
		}
	}
	return 0, 0, false
}

// TreeOwner returns the one uid and gid every task of pid's tree runs as
// (real, effective, saved and file-system), and whether there is one.
func TreeOwner(root int) (uid, gid int, ok bool) {
	uid, gid = -1, -1
	for _, p := range Tree(root) {
		for _, id := range []struct {
			key string
			v   *int
		}{{"Uid:", &uid}, {"Gid:", &gid}} {
			f := statusFields(p, id.key)
			if len(f) != 4 {
				return 0, 0, false
			}
			for _, s := range f {
				v, err := strconv.Atoi(s)
				if err != nil || *id.v >= 0 && v != *id.v {
					return 0, 0, false
				}
				*id.v = v
			}
		}
	}
	return uid, gid, uid >= 0
}

// HasSysResource reports whether this process has CAP_SYS_RESOURCE.
func HasSysResource() bool {
	f := statusFields(os.Getpid(), "CapEff:")
	if len(f) == 0 {
		return false
	}
	caps, err := strconv.ParseUint(f[0], 16, 64)
	return err == nil && caps&(1<<capSysResource) != 0
}

// statusFields returns the fields after key in /proc/PID/status.
func statusFields(pid int, key string) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// HoldsOpen reports whether pid has a file descriptor open on dir or on
// anything under it.
func HoldsOpen(pid int, dir string) bool {
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if p, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && (p == dir || strings.HasPrefix(p, dir+"/")) {
			return true
		}
	}
	return false
}
