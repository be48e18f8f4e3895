package api

import (
	"context"
	"errors"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ckptd/ckptd/access"
)

// Caller is who called over the unix socket, as the kernel saw it when
// the connection was made (SO_PEERCRED).
type Caller struct {
	credentials.CommonAuthInfo
	UID, GID, PID int
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
	return c, Caller{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}, nil
}

func (peerCred) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server side only")
}

func (peerCred) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (peerCred) Clone() credentials.TransportCredentials { return peerCred{} }

func (peerCred) OverrideServerName(string) error { return nil }

// withCaller puts who called into ctx for the daemon (package access).
// Every connection has a Caller: the handshake fails without one.
func withCaller(ctx context.Context) (context.Context, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if c, ok := p.AuthInfo.(Caller); ok {
			return access.With(ctx, access.Caller{UID: uint32(c.UID), GID: uint32(c.GID), PID: c.PID}), nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "no peer credentials on this connection")
}

// callerStream is a stream whose context carries its caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s callerStream) Context() context.Context { return s.ctx }
