package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/limits"
	"github.com/ckptd/ckptd/logfile"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/notify"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/term"
	"github.com/ckptd/ckptd/workload"
)

// RunRequest launches a workload.
type RunRequest struct {
	Name string
	Args []string
	Env  []string
	Dir  string
	// TTY gives the workload a terminal session of Size (see Attach).
	TTY  bool
	Size term.Size
	// User is whom it runs as (UID[:GID] or a name), for root callers;
	// any other caller's workloads run as the caller.
	User string
	// Net is its network: "private" (its own namespace on ckptd's
	// network, with Publish's ports; the default where ckptd has the CNI
	// plugins), "host" (the host's) or "none" (loopback only).
	Net     string
	Publish []string // HOSTPORT:PORT[/tcp|/udp]
	// ScaleToZero has ckptd hold the published ports: the workload sleeps
	// (is checkpointed and stopped) after IdleAfter with no connection
	// (0: only when asked), and wakes on its next one.
	ScaleToZero bool
	IdleAfter   time.Duration
	// Hooks are prepare=CMD, sealed=CMD, restored=CMD (see hooks.go).
	Hooks []string
	// LogMaxSize and LogMaxFiles bound its log (0: the daemon's).
	LogMaxSize  int64
	LogMaxFiles int
	// Memory (bytes) and CPUs bound it (0: unbounded).
	Memory int64
	CPUs   float64
	// Restart is no, always or on-failure[:N]; RestartFromCheckpoint
	// restores its newest checkpoint instead of running it again.
	Restart               string
	RestartFromCheckpoint bool
	// Persist has it outlive reboots (see Persist).
	Persist bool
	// A restart sets these, parsed already, and counts itself.
	restart  *store.RestartPolicy
	limits   *limits.Limits
	log      *logfile.Policy
	restarts int
}

// Run starts a workload as pid 1 of a new PID namespace.
func (d *Daemon) Run(ctx context.Context, req RunRequest) (*TargetStatus, error) {
	if err := validWorkloadName(req.Name); err != nil {
		return nil, err
	}
	user, err := runAs(ctx, req.User)
	if err != nil {
		return nil, err
	}
	ports, err := parsePorts(req.Publish)
	if err != nil {
		return nil, err
	}
	netSpec, err := d.netSpec(req.Net, ports)
	if err != nil {
		return nil, err
	}
	var stz *store.ScaleToZero
	if req.ScaleToZero {
		if stz, err = scaleToZero(netSpec, req.IdleAfter); err != nil {
			return nil, err
		}
		netSpec.Ports = nil // ckptd holds them
	}
	logs, err := d.logPolicy(req.LogMaxSize, req.LogMaxFiles)
	if err != nil {
		return nil, err
	}
	lim, err := d.workloadLimits(req.Memory, req.CPUs)
	if err != nil {
		return nil, err
	}
	restart, err := parseRestart(req.Restart, req.RestartFromCheckpoint)
	if err != nil {
		return nil, err
	}
	if req.restart != nil {
		restart, lim, logs = req.restart, req.limits, req.log
	} else {
		d.halt(store.TargetRef{Kind: store.KindWorkload, Name: req.Name}.Key(), false) // a user's run
	}
	if restart != nil && req.TTY {
		return nil, fmt.Errorf("--restart with -t: a terminal session is not restarted yet: %w", errdefs.ErrInvalidArgument)
	}
	hooks, err := parseHooks(req.Hooks)
	if err != nil {
		return nil, err
	}
	ref := store.TargetRef{Kind: store.KindWorkload, Name: req.Name, Command: req.Args, Notify: notifyName(req.Name, netSpec), Hooks: hooks, Log: logs, Limits: lim, Restart: restart}
	if user != nil {
		ref.Owner = user.Uid
	}
	unlock, err := d.locks.Lock(ctx, ref.Key())
	if err != nil {
		return nil, err
	}
	defer unlock()
	logPath, err := d.prepareWorkload(ctx, req.Name, false)
	if err != nil {
		return nil, err
	}
	env := append(append([]string{}, req.Env...), notify.Env+"="+ref.Notify)
	spec := workload.Spec{Args: req.Args, Env: env, Dir: req.Dir, LogPath: logPath, User: user, OwnNet: netSpec.Mode != network.Host}
	if req.TTY {
		s, rec, err := d.startTerminal(req.Name, logPath, req.Size, "")
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", req.Name, err)
		}
		defer s.Slave.Close() // the tree has its own; the holder ends with the last
		spec.TTY, ref.Terminal = s.Slave, rec
	}
	var t *store.Target
	pid, err := d.sup.Launch(spec, func(pid int) error {
		// Recorded before it runs: a ckptd killed from here on finds it
		// at its next start; one killed before leaves nothing running.
		ref.PID, ref.LogPath = pid, logPath
		t = &store.Target{TargetRef: ref, Created: time.Now().UTC(), ScaleToZero: stz,
			Launch: &store.Launch{Env: req.Env, Dir: req.Dir, User: req.User, Net: req.Net, Publish: req.Publish}, Restarts: req.restarts}
		if st, err := proc.ReadStat(pid); err == nil {
			t.StartTime = st.StartTime
		}
		if lim != nil {
			// Before its command runs: what it forks stays in.
			if err := d.limits.Apply(req.Name, pid, *lim); err != nil {
				return err
			}
		}
		if err := d.joinNetwork(ctx, t, netSpec); err != nil {
			return err
		}
		if err := d.store.PutTarget(ctx, t); err != nil {
			return errors.Join(fmt.Errorf("record target: %w", err), d.leaveJoined(ctx, t))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", req.Name, err)
	}
	d.log.Info("workload started", "name", req.Name, "pid", pid, "command", req.Args)
	// One that restarts may end at once: its policy takes it from there.
	if err := d.settled(ctx, t); err != nil && restart == nil {
		return nil, fmt.Errorf("run %s: %w", req.Name, err)
	}
	var persisted *store.Persisted
	if req.Persist {
		p, err := d.store.Persist(ctx, t.TargetRef, "")
		if err != nil {
			return nil, fmt.Errorf("run %s: it runs, but is not persisted: %w", req.Name, err)
		}
		persisted = &p
	}
	if stz != nil {
		if err := d.holdPorts(t); err != nil {
			// Its end lets go of its network.
			return nil, errors.Join(fmt.Errorf("run %s: %w", req.Name, err), proc.Signal(t.PID, t.StartTime, syscall.SIGKILL))
		}
	}
	s := d.status(t)
	s.Persisted = persisted
	return s, nil
}

// runSettle is how long Run watches a new workload before saying it runs:
// a bad argument or a port in use ends a program at once.
const runSettle = 300 * time.Millisecond

// settled waits up to runSettle for t to exit and reports an exit with
// the last lines of its output.
func (d *Daemon) settled(ctx context.Context, t *store.Target) error {
	deadline := time.Now().Add(runSettle)
	for time.Now().Before(deadline) {
		if e, ok := d.sup.ExitOf(t.PID); ok {
			return fmt.Errorf("it ended at once (%s)%s: %w", e, lastLines(t.LogPath, 3), errdefs.ErrFailedPrecondition)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// lastLines returns up to n last lines of a log as ": a; b; c", or "".
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	off, err := tailOffset(f, 4096, int64(n))
	if err != nil {
		return ""
	}
	data, err := io.ReadAll(io.NewSectionReader(f, off, 4096))
	if text := strings.TrimSpace(string(data)); err == nil && text != "" {
		return ": " + strings.ReplaceAll(text, "\n", "; ")
	}
	return ""
}

// prepareWorkload refuses a name that is in use by a running workload, or
// by one asleep unless waking it, and makes the workload's directory; it
// returns the log path.
func (d *Daemon) prepareWorkload(ctx context.Context, name string, waking bool) (string, error) {
	if err := validWorkloadName(name); err != nil {
		return "", err
	}
	key := store.TargetRef{Kind: store.KindWorkload, Name: name}.Key()
	if old, err := d.store.GetTarget(ctx, key); err == nil {
		if old.Hibernated() && !waking {
			return "", fmt.Errorf("workload %q sleeps (it scales to zero): wake it with 'ckptctl wake', or end it with 'ckptctl kill': %w", name, errdefs.ErrAlreadyExists)
		}
		if d.alive(old) {
			return "", fmt.Errorf("workload %q is running (pid %d): give a copy another name with --name: %w", name, old.PID, errdefs.ErrAlreadyExists)
		}
		// Its address is free again before the new one asks: a restore in
		// place asks for it.
		if err := d.releaseNetwork(ctx, old); err != nil {
			return "", fmt.Errorf("release the network of %s, which ended: %w", name, err)
		}
	}
	dir := d.store.Layout().Workload(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(dir, LogFile), nil
}

// validWorkloadName refuses a name a TARGET argument would read as
// something else (all digits: a PID); the name also becomes a directory.
func validWorkloadName(name string) error {
	if err := store.ValidateName(name); err != nil {
		return err
	}
	if strings.Trim(name, "0123456789") == "" {
		return fmt.Errorf("workload name %q is all digits, which ckptctl reads as a PID: choose a name with a letter: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}
