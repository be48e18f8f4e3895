package migrate

import (
	"context"
	"crypto/tls"
	"fmt"
	"regexp"
	"time"
)

// OpGroup opens the connection over which a coordinating ckptd drives this
// host's part of a group checkpoint (see docs/architecture.md, Groups).
const OpGroup = "group"

// Phases of a group checkpoint, coordinator to participant, each answered
// by its past (KindGroupPrepared...) or an error. Abort may come at any
// point before Release.
const (
	KindGroupPrepare   = "group-prepare"
	KindGroupPrepared  = "group-prepared"
	KindGroupFreeze    = "group-freeze"
	KindGroupFrozen    = "group-frozen"
	KindGroupDump      = "group-dump"
	KindGroupDumped    = "group-dumped"
	KindGroupCommit    = "group-commit"
	KindGroupCommitted = "group-committed"
	KindGroupRelease   = "group-release"
	KindGroupReleased  = "group-released"
	KindGroupAbort     = "group-abort"
)

// Limits on what a coordinator may ask of a participant.
const (
	MaxGroupTargets = 64
	MaxGroupMembers = 256
)

// GroupStep is the body of every group message; which fields are set
// depends on the phase.
type GroupStep struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Targets []string `json:"targets,omitempty"` // prepare: this host's targets
	// Prepare: how to dump. A participant takes these and nothing else.
	LeaveRunning   bool  `json:"leave_running,omitempty"`
	TCPEstablished bool  `json:"tcp_established,omitempty"`
	FileLocks      bool  `json:"file_locks,omitempty"`
	PrepareTimeout int64 `json:"prepare_timeout_ns,omitempty"`
	// Dumped: this host's members; commit: every host's.
	Members []GroupMember `json:"members,omitempty"`
}

// GroupMember is one member's checkpoint, on Host (the peer address the
// coordinator reached it at; empty on the host that took it).
type GroupMember struct {
	Host       string `json:"host,omitempty"`
	Checkpoint string `json:"checkpoint"`
	Name       string `json:"name"`
	Target     string `json:"target"` // as its host names it
}

// DialGroup opens a group connection to a participant.
func DialGroup(ctx context.Context, addr string, config *tls.Config, idle time.Duration) (*Conn, error) {
	return dial(ctx, addr, config, idle, Hello{Version: ProtocolVersion, Op: OpGroup})
}

var (
	groupIDRE     = regexp.MustCompile(`^[0-9a-f]{16}$`)
	groupTargetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// ValidateGroupStep checks a step from a coordinator: its shape only; the
// daemon checks the names against what it runs.
func ValidateGroupStep(kind string, s *GroupStep) error {
	if s == nil {
		return fmt.Errorf("group message %q without its body", kind)
	}
	if !groupIDRE.MatchString(s.ID) {
		return fmt.Errorf("group id %q: want 16 hex digits", s.ID)
	}
	if len(s.Targets) > MaxGroupTargets || len(s.Members) > MaxGroupMembers {
		return fmt.Errorf("group %s: %d targets, %d members: too many", s.ID, len(s.Targets), len(s.Members))
	}
	for _, t := range s.Targets {
		if !groupTargetRE.MatchString(t) {
			return fmt.Errorf("group %s: target %.40q: want a workload name or a PID", s.ID, t)
		}
	}
	for _, m := range s.Members {
		if !groupIDRE.MatchString(m.Checkpoint) || len(m.Host) > 256 || len(m.Name) > 256 || len(m.Target) > 256 {
			return fmt.Errorf("group %s: a malformed member", s.ID)
		}
	}
	if s.PrepareTimeout < 0 || s.PrepareTimeout > int64(time.Hour) {
		return fmt.Errorf("group %s: prepare timeout %d out of bounds", s.ID, s.PrepareTimeout)
	}
	return nil
}
