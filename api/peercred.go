package api

import (
	"context"
	"errors"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// Caller is who called over the unix socket, as the kernel saw it when
// the connection was made (SO_PEERCRED).
type Caller struct {
	credentials.CommonAuthInfo
	UID, PID int
}

// AuthType names these credentials.
func (Caller) AuthType() string { return "peercred" }

// peerCred are transport credentials that exchange nothing: they only
// read the connecting process's identity from the kernel.
type peerCred struct{}

func (peerCred) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("peercred: not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, err
	}
	if serr != nil {
		return nil, nil, serr
	}
	return c, Caller{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, UID: int(cred.Uid), PID: int(cred.Pid)}, nil
}

func (peerCred) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server side only")
}

func (peerCred) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (peerCred) Clone() credentials.TransportCredentials { return peerCred{} }

func (peerCred) OverrideServerName(string) error { return nil }
