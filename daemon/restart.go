package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/store"
)

// parseRestart reads run's --restart: no, always, on-failure[:N].
func parseRestart(s string, fromCheckpoint bool) (*store.RestartPolicy, error) {
	mode, max, hasMax := strings.Cut(s, ":")
	p := &store.RestartPolicy{FromCheckpoint: fromCheckpoint}
	switch {
	case s == "" || s == "no":
		if fromCheckpoint {
			return nil, fmt.Errorf("--restart-from-checkpoint needs --restart always or on-failure: %w", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case mode == "always" && !hasMax:
		p.Always = true
	case mode == "on-failure":
		if hasMax {
			n, err := strconv.Atoi(max)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--restart %q: want on-failure:N with N at least 1: %w", s, errdefs.ErrInvalidArgument)
			}
			p.Max = n
		}
	default:
		return nil, fmt.Errorf("--restart %q: want no, always or on-failure[:N]: %w", s, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// markEnding notes that ckptd itself ends the process pid (a kill, a
// checkpoint that stops it): its end is no failure to restart after.
// unmark takes it back when the process lives on after all.
func (d *Daemon) markEnding(pid int) (unmark func()) {
	d.mu.Lock()
	d.ending[pid] = true
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.ending, pid)
		d.mu.Unlock()
	}
}

// halt turns a workload's restarts off (a user ended it) or back on (a
// user ran or restored it again).
func (d *Daemon) halt(key string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.halted[key] = true
	} else {
		delete(d.halted, key)
	}
}

func (d *Daemon) isHalted(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.halted[key]
}

// endedOnPurpose reports, once, whether ckptd ended pid.
func (d *Daemon) endedOnPurpose(pid int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	on := d.ending[pid]
	delete(d.ending, pid)
	return on
}

// endingDumper marks the tree a dump will stop as ended on purpose.
type endingDumper struct {
	Dumper
	d *Daemon
}

func (e endingDumper) Dump(ctx context.Context, req dumper.Request) (dumper.Result, error) {
	if req.Options.LeaveRunning {
		return e.Dumper.Dump(ctx, req)
	}
	unmark := e.d.markEnding(req.PID)
	res, err := e.Dumper.Dump(ctx, req)
	if err != nil {
		unmark() // CRIU resumed it
	}
	return res, err
}

// restartEnded restarts the workload whose root pid ended, if its policy
// says so.
func (d *Daemon) restartEnded(pid int) {
	purpose := d.endedOnPurpose(pid)
	ctx := context.Background()
	ts, err := d.store.ListTargets(ctx)
	if err != nil {
		return
	}
	for _, t := range ts {
		if t.PID != pid || t.Kind != store.KindWorkload || t.Restart == nil || purpose {
			continue
		}
		exit, _ := d.sup.ExitOf(pid)
		p := t.Restart
		switch {
		case !p.Always && exit.Code == 0 && exit.Signal == "":
			return
		case p.Max > 0 && t.Restarts >= p.Max:
			d.log.Info("workload not restarted: it was restarted as often as its policy allows", "target", t.Key(), "exit", exit.String(), "restarts", t.Restarts)
			return
		}
		go d.restart(t, exit.String())
		return
	}
}

// restartDelay grows with each restart, at most 30 s.
func restartDelay(n int) time.Duration {
	return min(time.Duration(n+1)*200*time.Millisecond, 30*time.Second)
}

func (d *Daemon) restart(old *store.Target, exit string) {
	time.Sleep(restartDelay(old.Restarts))
	if d.isHalted(old.Key()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	var how string
	if _, lerr := d.latestSealed(ctx, old.Name); old.Restart.FromCheckpoint && lerr == nil || old.Launch == nil {
		how = "from its newest checkpoint"
		_, err = d.Restore(ctx, RestoreRequest{Checkpoint: old.Name, Latest: true, restarts: old.Restarts + 1, launch: old.Launch})
	} else {
		how = "again"
		l := old.Launch
		_, err = d.Run(ctx, RunRequest{Name: old.Name, Args: old.Command, Env: l.Env, Dir: l.Dir, User: l.User, Net: l.Net,
			Publish: l.Publish, Hooks: hookList(old.Hooks), restart: old.Restart, limits: old.Limits, log: old.Log, restarts: old.Restarts + 1})
	}
	if err != nil {
		d.log.Error("restart a workload", "target", old.Key(), "exit", exit, "err", err)
		return
	}
	d.log.Info("workload restarted", "target", old.Key(), "how", how, "after", exit, "restarts", old.Restarts+1)
}

// hookList is the hooks of a TargetRef as run takes them.
func hookList(h map[string]string) []string {
	var out []string
	for event, cmd := range h {
		out = append(out, event+"="+cmd)
	}
	return out
}
