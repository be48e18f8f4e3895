package api

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// ServerOptions log every failed request with its method, code and
// reason: a refused restore or a failed create leaves a line in ckptd's
// log, not only in the client's terminal.
func ServerOptions(log *slog.Logger) []grpc.ServerOption {
	logFailure := func(method string, err error) {
		if err != nil {
			st := status.Convert(err)
			log.Warn("request failed", "method", method, "code", st.Code().String(), "err", st.Message())
		}
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			logFailure(info.FullMethod, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			logFailure(info.FullMethod, err)
			return err
		}),
	}
}
