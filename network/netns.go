// Package network gives a workload its own network namespace, wired by
// the CNI plugins the host has (bridge, host-local, portmap, loopback)
// through libcni, as containerd's and Podman's CNI code do: nothing here
// makes bridges or firewall rules by hand.
package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// NewNS makes a network namespace and keeps it at dir/name (a bind mount
// of the namespace), so that it outlives every process in it: CNI wires
// it by path, and a restore puts a tree back into it.
func NewNS(dir, name string) (path string, err error) {
	path, err = nsFile(dir, name)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	done := make(chan error, 1)
	go func() {
		// This thread ends in the new namespace: it never unlocks, so Go
		// retires it with the goroutine rather than run others there.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare a network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		done <- bindNS(self, path)
	}()
	return path, <-done
}

// PinNS keeps the network namespace of process pid at dir/name.
func PinNS(dir, name string, pid int) (string, error) {
	path, err := nsFile(dir, name)
	if err != nil {
		return "", err
	}
	if err := bindNS(fmt.Sprintf("/proc/%d/ns/net", pid), path); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// RemoveNS unmounts and removes a namespace NewNS or PinNS kept. The
// namespace itself ends with the last process in it. Removing one that
// is gone is not an error.
func RemoveNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// nsFile creates the empty file a namespace is mounted on.
func nsFile(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return "", fmt.Errorf("network namespace %s: %w", name, err)
	}
	return path, f.Close()
}

func bindNS(from, to string) error {
	if err := unix.Mount(from, to, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("keep network namespace %s at %s: %w", from, to, err)
	}
	return nil
}

// CRIUKey is the key a namespace external to a dump is known by, in the
// dump (External) and to the restore that hands one in (inherit-fd).
const CRIUKey = "extRootNetNS"

// External is CRIU's name of the namespace at path, external to a dump.
func External(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("network namespace %s: %w", path, err)
	}
	return fmt.Sprintf("net[%d]:%s", st.Ino, CRIUKey), nil
}
