// Package errdefs holds the error kinds shared by ckptd's packages. Domain
// code wraps them with %w; only api/ maps them to transport codes.
package errdefs

import (
	"errors"
	"strings"
)

var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	// ErrDeadlineExceeded marks work that was cut short by its deadline
	// (a CRIU call ended by its watchdog).
	ErrDeadlineExceeded = errors.New("deadline exceeded")
	// ErrDataLoss marks a checkpoint whose files no longer match their checksums.
	ErrDataLoss = errors.New("data loss")
	// ErrPermissionDenied marks what this host's policy does not allow (a
	// checkpoint from outside asking for the host's namespaces, say).
	ErrPermissionDenied = errors.New("permission denied")
)

func IsNotFound(err error) bool           { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool      { return errors.Is(err, ErrAlreadyExists) }
func IsInvalidArgument(err error) bool    { return errors.Is(err, ErrInvalidArgument) }
func IsFailedPrecondition(err error) bool { return errors.Is(err, ErrFailedPrecondition) }
func IsUnavailable(err error) bool        { return errors.Is(err, ErrUnavailable) }
func IsDataLoss(err error) bool           { return errors.Is(err, ErrDataLoss) }
func IsDeadlineExceeded(err error) bool   { return errors.Is(err, ErrDeadlineExceeded) }
func IsPermissionDenied(err error) bool   { return errors.Is(err, ErrPermissionDenied) }

// Message is err's text without a trailing ": <kind>" that adds nothing
// to the sentence (a transport code or a report carries it); "not found"
// and "already exists" read well and stay.
func Message(err error) string {
	msg := err.Error()
	for _, kind := range []error{ErrInvalidArgument, ErrFailedPrecondition, ErrUnavailable, ErrDataLoss, ErrDeadlineExceeded, ErrPermissionDenied} {
		if m, ok := strings.CutSuffix(msg, ": "+kind.Error()); ok {
			return m
		}
	}
	return msg
}
