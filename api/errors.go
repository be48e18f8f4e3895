package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ckptd/ckptd/errdefs"
)

// toStatus maps domain error kinds to gRPC codes. This is the only place
// that knows both.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errdefs.IsNotFound(err):
		code = codes.NotFound
	case errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errdefs.IsFailedPrecondition(err):
		code = codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		code = codes.Unavailable
	case errdefs.IsDataLoss(err):
		code = codes.DataLoss
	case errdefs.IsDeadlineExceeded(err):
		code = codes.DeadlineExceeded
	case errdefs.IsPermissionDenied(err):
		code = codes.PermissionDenied
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, message(err))
}

func message(err error) string { return errdefs.Message(err) }
