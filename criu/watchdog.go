package criu

import (
	"sync"
	"time"

	"github.com/ckptd/ckptd/proc"
)

// watchdog kills a helper's process group when CRIU has had its time.
// Time spent in ckptd's own notification handlers is not counted.
type watchdog struct {
	mu        sync.Mutex
	left      time.Duration
	since     time.Time
	timer     *time.Timer
	fired     chan struct{}
	hasFired  bool
	g         *group
	unlimited bool
}

func newWatchdog(timeout time.Duration, g *group) *watchdog {
	w := &watchdog{left: timeout, since: time.Now(), fired: make(chan struct{}), g: g, unlimited: timeout <= 0}
	if !w.unlimited {
		w.timer = time.AfterFunc(timeout, w.fire)
	}
	return w
}

func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hasFired {
		return
	}
	w.hasFired = true
	close(w.fired)
	if err := proc.KillGroup(w.g.pgid); err != nil {
		w.g.h.log.Error("watchdog: kill criu", "pgid", w.g.pgid, "err", err)
	}
}

func (w *watchdog) pause() {
	if w.unlimited {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer.Stop() {
		w.left -= time.Since(w.since)
	}
}

func (w *watchdog) resume() {
	if w.unlimited {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hasFired {
		return
	}
	w.since = time.Now()
	w.timer.Reset(max(w.left, time.Millisecond))
}

func (w *watchdog) stop() {
	if !w.unlimited {
		w.timer.Stop()
	}
}

func (w *watchdog) expired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hasFired
}
