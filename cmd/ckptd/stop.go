package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ckptd/ckptd/config"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/sdnotify"
)

// waitInFlight waits for done until the grace deadline, and past it while
// a migration is committed: cutting one short would resume the source
// while the destination runs the target too.
func waitInFlight[T any](done <-chan T, deadline time.Time, d *daemon.Daemon, log *slog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	logged := false
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if time.Now().Before(deadline) {
			continue
		}
		hold := d.CommittedUntil()
		if time.Now().After(hold) {
			return
		}
		if !logged {
			log.Info("shutdown waits for a committed migration", "until", hold)
			logged = true
		}
	}
}

// checkpointForShutdown checkpoints and stops the persisted targets when
// this stop is a shutdown's: the next start restores them. Any other stop
// (an upgrade) leaves every target running for the next ckptd to adopt.
func checkpointForShutdown(cfg config.Config, manager sdnotify.Notifier, d *daemon.Daemon, log *slog.Logger) {
	ask, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	shutdown := cfg.CheckpointOnStop || manager.SystemStopping(ask)
	cancel()
	if !shutdown {
		return
	}
	bound, _ := cfg.ShutdownCheckpointTimeout() // validated
	ctx, cancel := context.WithTimeoutCause(context.Background(), bound,
		fmt.Errorf("a shutdown's checkpoints end within shutdown_checkpoint_timeout (%s): %w", bound, context.DeadlineExceeded))
	defer cancel()
	start := time.Now()
	if err := manager.Notify("stopping: checkpointing the persisted targets", sdnotify.Stopping); err != nil {
		log.Warn("tell the service manager ckptd checkpoints", "err", err)
	}
	n, err := d.CheckpointPersisted(ctx)
	if err != nil {
		log.Error("shutdown: not every persisted target was checkpointed", "checkpointed", n, "err", err)
		return
	}
	log.Info("shutdown: persisted targets checkpointed", "checkpointed", n, "took", time.Since(start))
}
