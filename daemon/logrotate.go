package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/logfile"
)

// logRotateEvery is how often workloads' logs are measured.
const logRotateEvery = 2 * time.Second

// rotateLogs keeps every running workload's log within its policy until
// ctx ends.
func (d *Daemon) rotateLogs(ctx context.Context) {
	tick := time.NewTicker(logRotateEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ts, err := d.store.ListTargets(ctx)
		if err != nil {
			d.log.Warn("list targets to rotate their logs", "err", err)
			continue
		}
		for _, t := range ts {
			if t.LogPath == "" || !d.alive(t) {
				continue
			}
			p := d.logs
			if t.Log != nil {
				p = *t.Log
			}
			if rotated, err := p.Rotate(t.LogPath); err != nil {
				d.log.Warn("rotate a workload's log", "target", t.Key(), "err", err)
			} else if rotated {
				d.log.Debug("workload log rotated", "target", t.Key(), "max_size", p.MaxSize, "max_files", p.MaxFiles)
			}
		}
	}
}

// logPolicy is a workload's own log policy, nil when it asks for none.
func (d *Daemon) logPolicy(size int64, files int) (*logfile.Policy, error) {
	if size == 0 && files == 0 {
		return nil, nil
	}
	p := d.logs
	if size != 0 {
		p.MaxSize = size
	}
	if files != 0 {
		p.MaxFiles = files
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}
