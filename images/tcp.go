package images

import (
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
)

// TCPPorts are the local and remote ports of a connected TCP socket.
type TCPPorts struct{ Src, Dst uint32 }

// tcpListen is the kernel's TCP_LISTEN state.
const tcpListen = 10

// TCPConnections lists the ports of the connected (not listening) TCP
// sockets in the images in dir.
func TCPConnections(dir string) ([]TCPPorts, error) {
	files, err := decodeFile(filepath.Join(dir, "files.img"), &fdinfo.FileEntry{})
	if err != nil {
		return nil, err
	}
	var out []TCPPorts
	for _, e := range files.Entries {
		fe, ok := e.Message.(*fdinfo.FileEntry)
		if !ok || fe.GetType() != fdinfo.FdTypes_INETSK || fe.GetIsk() == nil {
			continue
		}
		sk := fe.GetIsk()
		if sk.GetProto() == 6 && sk.GetState() != tcpListen && sk.GetDstPort() != 0 {
			out = append(out, TCPPorts{Src: sk.GetSrcPort(), Dst: sk.GetDstPort()})
		}
	}
	return out, nil
}
