package network

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Hold takes the host's end of a's veth pair down, so that nothing
// reaches the namespace, until release: while CRIU restores established
// connections into it, a peer's retransmission must find no interface
// rather than a namespace with the address and no socket yet, which would
// reset it. (CRIU locks a namespace it makes itself; this one is external
// to its images.) The namespace keeps its routes: only the carrier goes.
func Hold(a Attachment) (release func() error, err error) {
	if a.HostVeth == "" {
		return func() error { return nil }, nil
	}
	if err := setUp(a.HostVeth, false); err != nil {
		return nil, err
	}
	return func() error {
		err := setUp(a.HostVeth, true)
		if errors.Is(err, unix.ENODEV) {
			return nil // gone with its namespace
		}
		return err
	}, nil
}

// setUp sets or clears a link's IFF_UP.
func setUp(name string, up bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("flags of %s: %w", name, err)
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s %s: %w", name, map[bool]string{true: "up", false: "down"}[up], err)
	}
	return nil
}
