package api

import (
	"context"
	"errors"
	"strings"

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
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, message(err))
}

// message drops a trailing ": <kind>" that adds nothing to the sentence
// (the code carries it); "not found" and "already exists" read well and stay.
func message(err error) string {
	msg := err.Error()
	for _, kind := range []error{errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition,
		errdefs.ErrUnavailable, errdefs.ErrDataLoss} {
		if m, ok := strings.CutSuffix(msg, ": "+kind.Error()); ok {
			return m
		}
	}
	return msg
}
