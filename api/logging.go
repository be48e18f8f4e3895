package api

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServerOptions identify every caller by its uid and pid (SO_PEERCRED)
// and log every request with them: its method, code and duration, and
// the reason when it failed (a refused restore leaves a line in ckptd's
// log, not only in the client's terminal). Closing stopping ends the
// streams that only watch.
func ServerOptions(log *slog.Logger, stopping <-chan struct{}) []grpc.ServerOption {
	logRequest := func(ctx context.Context, method string, start time.Time, err error) {
		attrs := []any{"method", method, "duration", time.Since(start).Round(time.Microsecond)}
		if p, ok := peer.FromContext(ctx); ok {
			if c, ok := p.AuthInfo.(Caller); ok {
				attrs = append(attrs, "uid", c.UID, "pid", c.PID)
			}
		}
		if err == nil {
			log.Info("request", attrs...)
			return
		}
		st := status.Convert(err)
		log.Warn("request failed", append(attrs, "code", st.Code().String(), "err", st.Message())...)
	}
	return append(transportServerOptions(),
		grpc.Creds(peerCred{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			cctx, err := withCaller(ctx)
			var resp any
			if err == nil {
				resp, err = h(cctx, req)
			}
			logRequest(ctx, info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			ctx, err := withCaller(ss.Context())
			if err == nil {
				err = h(srv, callerStream{ServerStream: ss, ctx: ctx})
			}
			logRequest(ss.Context(), info.FullMethod, start, err)
			return err
		}, endWatching(stopping)),
	)
}
