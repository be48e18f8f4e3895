package images

import (
	"encoding/binary"
	"net"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
)

// NeedsNetwork reports whether restoring the images in dir needs its
// network namespace wired first: a socket bound to an address of its own
// (not a wildcard or loopback), bound to a device, or connected (its
// route), a packet socket or a tun device. A tree that needs none of
// these can be restored while the namespace is wired.
func NeedsNetwork(dir string) (bool, error) {
	files, err := decodeFile(filepath.Join(dir, "files.img"), &fdinfo.FileEntry{})
	if err != nil {
		return true, err
	}
	for _, e := range files.Entries {
		fe, ok := e.Message.(*fdinfo.FileEntry)
		if !ok {
			continue
		}
		switch fe.GetType() {
		case fdinfo.FdTypes_PACKETSK, fdinfo.FdTypes_TUNF:
			return true, nil
		case fdinfo.FdTypes_INETSK:
			sk := fe.GetIsk()
			if sk == nil || sk.GetIfname() != "" || sk.GetDstPort() != 0 ||
				!localOnly(sk.GetSrcAddr()) || !localOnly(sk.GetDstAddr()) {
				return true, nil
			}
		}
	}
	return false, nil
}

// localOnly: an address CRIU saved (the kernel's bytes, in words of host
// order) that is absent, a wildcard or loopback.
func localOnly(words []uint32) bool {
	b := make([]byte, 0, 4*len(words))
	for _, w := range words {
		b = binary.NativeEndian.AppendUint32(b, w)
	}
	if len(b) != net.IPv4len && len(b) != net.IPv6len {
		return len(b) == 0
	}
	ip := net.IP(b)
	return ip.IsUnspecified() || ip.IsLoopback()
}
