// Package access says what a caller of ckptd's API may do. Root may do
// everything ckptd can. A member of socket_group who is not root acts as
// itself: its workloads run as its uid, and it sees, checkpoints and
// restores only what it owns.
package access

import (
	"context"
	"fmt"

	"github.com/ckptd/ckptd/errdefs"
)

// Caller is who made a request, as the kernel saw the connection.
type Caller struct {
	UID, GID uint32
	// PID is the caller's process as ckptd's PID namespace numbers it (0
	// for ckptd's own work). A caller in a nested PID namespace names
	// processes by its own numbers.
	PID int
}

// Root is ckptd's own work (schedules, start-up) and root's requests.
var Root = Caller{}

type callerKey struct{}

// With returns ctx carrying c.
func With(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// From is the caller ctx carries; ckptd's own work, which no request
// started, is Root.
func From(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return Root
}

// IsRoot says whether c may do everything.
func (c Caller) IsRoot() bool { return c.UID == 0 }

// Owns says whether c may see and act on what uid owner owns.
func (c Caller) Owns(owner uint32) bool { return c.IsRoot() || c.UID == owner }

// Need refuses what only root may do; what names it ("migrate").
func (c Caller) Need(what string) error {
	if c.IsRoot() {
		return nil
	}
	return fmt.Errorf("%s needs root; you are uid %d: %w", what, c.UID, errdefs.ErrPermissionDenied)
}
