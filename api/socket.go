package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// Listen opens the API socket: root's alone (0600), or shared with one
// group (0660) when socketGroup is set. A checkpoint holds a process's
// whole memory; whoever may call ckptd may read it.
func Listen(path, socketGroup string) (net.Listener, error) {
	gid, err := lookupGroup(socketGroup)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, 0, max(gid, 0)); err != nil {
			return nil, err
		}
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another ckptd is serving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The socket is made in a directory only root may enter, given its
	// owner and mode there, and only then renamed into place: no one else
	// can connect in between, whatever the umask.
	private, err := os.MkdirTemp(dir, ".ckptd-socket-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(private)
	made := filepath.Join(private, "s")
	lis, err := net.Listen("unix", made)
	if err != nil {
		return nil, err
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false) // it lives at path from here on
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
	}
	if err := errors.Join(os.Chown(made, 0, max(gid, 0)), os.Chmod(made, mode), os.Rename(made, path)); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

// lookupGroup resolves a group name or id; -1 for none.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if g, err = user.LookupGroupId(name); err != nil {
			return -1, fmt.Errorf("socket_group %q: no such group", name)
		}
	}
	return strconv.Atoi(g.Gid)
}
