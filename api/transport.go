package api

import "google.golang.org/grpc"

// Archives and logs stream through the local socket in 1 MiB chunks.
// gRPC's defaults (64 KiB flow-control windows, 32 KiB socket buffers)
// hold such a stream to a fraction of what the socket carries.
const (
	streamWindow = 16 << 20
	socketBuffer = 1 << 20
)

func transportServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(streamWindow),
		grpc.WriteBufferSize(socketBuffer), grpc.ReadBufferSize(socketBuffer),
	}
}

// DialOptions are the client's side of transportServerOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(streamWindow),
		grpc.WithWriteBufferSize(socketBuffer), grpc.WithReadBufferSize(socketBuffer),
	}
}
