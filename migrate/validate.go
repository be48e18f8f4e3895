package migrate

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/ckptd/ckptd/store"
)

// Bounds on what a peer may send, checked before anything is allocated or
// written. A peer holds a valid certificate, but a bug or a compromised
// host must cost only its own migration.
const (
	MaxFiles     = 100_000 // image files of one migration
	maxFileNeeds = 100_000 // paths an offer lists
	maxPIDs      = 1 << 22 // the kernel's pid_max ceiling
	maxStrings   = 1024    // problems, warnings, features
	maxFileSize  = 1 << 40 // one image file; RecvFile also checks the disk
	maxMemory    = 1 << 50 // an offer's memory estimate
	maxCPUInfo   = 1 << 20 // a cpuinfo image
	maxTextLen   = 64 << 10
	maxIdleMs    = 24 * 3600 * 1000 // a peer timeout of a day
)

// MaxRounds bounds a pre-copy's rounds, the frozen one included.
const MaxRounds = 16

var tokenRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// validate checks that the message carries the field its kind names, with
// every field the receiver will use present and in bounds. What a field
// means (is this name free here?) is the daemon's to judge.
func (m *Message) validate() error {
	switch m.Kind {
	case KindHello:
		return m.Hello.validate()
	case KindOffer:
		return m.Offer.validate()
	case KindReport:
		if m.Report == nil {
			return errors.New("report without its body")
		}
		if m.Report.Token != "" && !tokenRE.MatchString(m.Report.Token) {
			return errors.New("report with a malformed token")
		}
		if m.Report.Streams < 0 || m.Report.Streams > MaxStreams {
			return fmt.Errorf("report of %d page connections, at most %d", m.Report.Streams, MaxStreams)
		}
		if m.Report.IdleMs < 0 || m.Report.IdleMs > maxIdleMs {
			return fmt.Errorf("report's peer timeout %d ms is out of range", m.Report.IdleMs)
		}
		return boundedStrings("problems", m.Report.Problems)
	case KindFile:
		if m.File == nil || !plainName(m.File.Name) || m.File.Size < 0 || m.File.Size > maxFileSize {
			return fmt.Errorf("bad file header %+v", m.File)
		}
	case KindCommit:
		if m.Commit == nil || m.Commit.Checkpoint == nil {
			return errors.New("commit without its checkpoint")
		}
		return validTarget(m.Commit.Checkpoint.Target)
	case KindRestored:
		r := m.Restored
		if r == nil || r.PID <= 0 || r.Name == "" {
			return fmt.Errorf("bad restored message %+v", r)
		}
		return boundedStrings("warnings", r.Warnings)
	case KindDone:
		if m.Done == nil {
			return errors.New("done without its body")
		}
	case KindError:
		if len(m.Error) > maxTextLen {
			return errors.New("error message too long")
		}
	case KindAlive:
	case KindRound:
		if m.Round == nil || m.Round.N < 1 || m.Round.N > MaxRounds {
			return fmt.Errorf("bad round %+v", m.Round)
		}
	case KindGroupAbort:
	case KindGroupPrepare, KindGroupPrepared, KindGroupFreeze, KindGroupFrozen, KindGroupDump, KindGroupDumped,
		KindGroupCommit, KindGroupCommitted, KindGroupRelease, KindGroupReleased:
		return ValidateGroupStep(m.Kind, m.Group)
	default:
		return fmt.Errorf("unknown message kind %q", m.Kind)
	}
	return nil
}

func (h *Hello) validate() error {
	switch {
	case h == nil:
		return errors.New("hello without its body")
	case h.Op != OpMigrate && h.Op != OpPages && h.Op != OpGroup:
		return fmt.Errorf("unknown operation %q", h.Op)
	case h.Token != "" && !tokenRE.MatchString(h.Token):
		return errors.New("page stream with a malformed token")
	}
	return nil
}

func (o *Offer) validate() error {
	switch {
	case o == nil:
		return errors.New("offer without its body")
	case o.MemoryBytes < 0 || o.MemoryBytes > maxMemory:
		return fmt.Errorf("offer's memory estimate %d is out of range", o.MemoryBytes)
	case len(o.CPUInfo) > maxCPUInfo:
		return errors.New("offer's cpuinfo image is too large")
	case len(o.Files) > maxFileNeeds || len(o.PIDs) > maxPIDs:
		return errors.New("offer lists too many files or PIDs")
	case o.Target.Kind == store.KindContainer && o.Container == nil:
		return errors.New("container offer without its container record")
	case o.Rounds < 0 || o.Rounds > MaxRounds || o.Rounds > 0 && o.PageStream:
		return fmt.Errorf("offer of %d pre-copy rounds: at most %d, without a page stream", o.Rounds, MaxRounds)
	case o.Streams < 0 || o.Streams > MaxStreams:
		return fmt.Errorf("offer of %d page connections, at most %d", o.Streams, MaxStreams)
	case o.Lazy && (!o.PageStream || o.Fenced || o.Rounds > 0 || o.Target.Kind == store.KindContainer):
		return errors.New("post-copy offer: a process tree's, with a page stream, neither fenced nor in rounds")
	}
	for _, pid := range o.PIDs {
		if pid <= 0 {
			return fmt.Errorf("offer lists pid %d", pid)
		}
	}
	for _, f := range o.Files {
		if f.Path == "" || f.Path[0] != '/' || f.Size < 0 {
			return fmt.Errorf("offer lists a bad file %+v", f)
		}
	}
	if err := boundedStrings("features", o.Features); err != nil {
		return err
	}
	return validTarget(o.Target)
}

// validTarget checks what a receiver builds paths and keys from: a
// workload's name becomes a directory under the state root.
func validTarget(t store.TargetRef) error {
	switch t.Kind {
	case store.KindWorkload:
		return store.ValidateName(t.Name)
	case store.KindContainer:
		if t.Name == "" {
			return errors.New("container target without a name")
		}
	case store.KindProcess:
		if t.PID <= 0 {
			return fmt.Errorf("process target with pid %d", t.PID)
		}
	default:
		return fmt.Errorf("unknown target kind %q", t.Kind)
	}
	return nil
}

func boundedStrings(what string, ss []string) error {
	if len(ss) > maxStrings {
		return fmt.Errorf("%d %s, at most %d", len(ss), what, maxStrings)
	}
	for _, s := range ss {
		if len(s) > maxTextLen {
			return fmt.Errorf("one of the %s is longer than %d bytes", what, maxTextLen)
		}
	}
	return nil
}
