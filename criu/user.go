package criu

import (
	"os/exec"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
)

// User is whom a CRIU helper runs as. Dumping a tree, CRIU reads every
// task's resource limits (prlimit), which the kernel allows only to a
// process with the task's uids and gids, or with CAP_SYS_RESOURCE. Where
// ckptd lacks that capability (a host whose bounding set drops it), a
// tree of one user is dumped by a CRIU running as that user, in CRIU's
// unprivileged mode, holding as ambient capabilities what it needs to
// trace, read and write images under ckptd's root-only state directory.
// Holding more capabilities than its user, it cannot be traced by them.
type User struct {
	UID, GID uint32
}

// helperCaps are the capabilities an unprivileged CRIU is given.
var helperCaps = []uintptr{
	unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SYS_PTRACE, unix.CAP_SYS_ADMIN,
	unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER, unix.CAP_CHOWN,
	unix.CAP_NET_ADMIN, unix.CAP_KILL, unix.CAP_SETUID, unix.CAP_SETGID,
}

func (u *User) apply(cmd *exec.Cmd, opts *rpc.CriuOpts) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}},
		AmbientCaps: helperCaps,
	}
	if opts != nil {
		opts.Unprivileged = ptr(true)
	}
}
