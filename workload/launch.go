// Package workload starts the process trees ckptd owns and reaps them:
// ckptd is a child subreaper, so restored roots and orphans of host-PID
// restores become its children, and a zombie would otherwise keep a PID a
// later restore needs.
package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/proc"
)

// Spec is a command to launch.
type Spec struct {
	Args    []string
	Env     []string
	Dir     string
	LogPath string // stdout and stderr, appended
	// TTY, when set, is the terminal (a pseudo-terminal's slave side) the
	// command gets as stdin, stdout, stderr and controlling terminal;
	// its holder writes the log.
	TTY *os.File
	// User, when set, is whom the command runs as (nil: root). Such a
	// tree stays in the host's PID namespace: CRIU dumps the root of a PID
	// namespace through a /proc of that namespace, which it mounts from
	// inside the task when /proc is not its own, and a task without
	// privileges cannot mount ("can't dump unprivileged task whose /proc
	// doesn't belong to it").
	User *syscall.Credential
	// OwnNet starts it in a new network namespace, which the record
	// callback wires before the command runs.
	OwnNet bool
}

// Launch starts spec as pid 1 of a new PID namespace, in its own session,
// with stdin from /dev/null and output to spec.LogPath. Being namespaced,
// a checkpoint of it restores beside the running original. record gets
// the PID before the command runs (it waits at a gate, see Gate): an
// error from it, or a ckptd that ends first, ends it unrun.
func (s *Supervisor) Launch(spec Spec, record func(pid int) error) (int, error) {
	path, err := launchable(spec)
	if err != nil {
		return 0, err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	out, err := os.OpenFile(spec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	defer out.Close()
	gate, open, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer gate.Close()
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	attr := &os.ProcAttr{
		Dir:   dir,
		Env:   spec.Env,
		Files: []*os.File{null, out, out, gate},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Cloneflags: syscall.CLONE_NEWPID,
			Credential: spec.User,
		},
	}
	if spec.User != nil {
		attr.Sys.Cloneflags = 0
	}
	if spec.OwnNet {
		attr.Sys.Cloneflags |= syscall.CLONE_NEWNET
	}
	if spec.TTY != nil {
		attr.Files = []*os.File{spec.TTY, spec.TTY, spec.TTY, gate}
		attr.Sys.Setctty, attr.Sys.Ctty = true, 0
	}
	pid, err := s.startGated(path, spec.Args, attr)
	if err != nil {
		open.Close()
		return 0, err
	}
	defer open.Close() // unwritten, it ends the gate
	if err := record(pid); err != nil {
		return 0, err
	}
	if _, err := open.Write([]byte{1}); err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.Args[0], err)
	}
	return pid, nil
}

// launchable checks that spec's command can be started, and finds it in
// PATH when named bare: after the gate, a failed exec is only an exit.
func launchable(spec Spec) (string, error) {
	if len(spec.Args) == 0 {
		return "", fmt.Errorf("no command given: %w", errdefs.ErrInvalidArgument)
	}
	path := spec.Args[0]
	if filepath.Base(path) == path {
		// Look the command up in the caller's PATH, as a shell would.
		return lookPath(path, spec.Env)
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return "", fmt.Errorf("start %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("start %s: not a file: %w", path, errdefs.ErrInvalidArgument)
	}
	return path, nil
}

// startGated starts the gate that becomes path, and tracks it.
func (s *Supervisor) startGated(path string, args []string, attr *os.ProcAttr) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // held until tracked, so the orphan reaper cannot take it
	proc.SpawnMu.Lock()
	p, err := os.StartProcess(s.gate, append([]string{gateArg0, path}, args...), attr)
	proc.SpawnMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", args[0], err)
	}
	s.trackLocked(p)
	return p.Pid, nil
}

// Spawn starts a helper of ckptd (a terminal holder) in its own session,
// with stderr as its stderr and files as its descriptors 3, 4, ...; the
// orphan reaper reaps it when it ends, and nothing ends it with ckptd
// (nor holds ckptd's own output open).
func (s *Supervisor) Spawn(argv []string, stderr *os.File, files []*os.File) (int, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: append([]*os.File{null, null, stderr}, files...),
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	proc.SpawnMu.Lock()
	p, err := os.StartProcess(argv[0], argv, attr)
	proc.SpawnMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	pid := p.Pid
	p.Release()
	return pid, nil
}

func lookPath(name string, env []string) (string, error) {
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			pathEnv = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH: %w", name, errdefs.ErrInvalidArgument)
}
