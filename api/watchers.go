package api

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

// Stopping begins the message a watching client gets when ckptd stops.
const Stopping = "ckptd is stopping"

// watching are the streams that only follow something (events, a log, a
// terminal session) and would otherwise hold a stopping ckptd for its
// whole grace: nothing is lost by ending them.
var watching = map[string]bool{
	apiv1.Ckptd_Events_FullMethodName: true,
	apiv1.Ckptd_Logs_FullMethodName:   true,
	apiv1.Ckptd_Attach_FullMethodName: true,
}

// endWatching ends the watching streams when stopping is closed, telling
// their clients why.
func endWatching(stopping <-chan struct{}) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if !watching[info.FullMethod] {
			return h(srv, ss)
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := h(srv, stream{ss, ctx})
		select {
		case <-stopping:
			return status.Error(codes.Unavailable, Stopping+"; what it runs keeps running: try again once it is back")
		default:
			return err
		}
	}
}

// stream is a server stream with its own context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stream) Context() context.Context { return s.ctx }
