package daemon

import "time"

// Phase is one part of a migration's downtime.
type Phase struct {
	Name     string
	Duration time.Duration
}

// freeze starts the downtime's clock.
func (m *outgoing) freeze() {
	m.frozen = time.Now()
	m.last = m.frozen
}

// mark ends the phase name now.
func (m *outgoing) mark(name string) {
	now := time.Now()
	m.marks = append(m.marks, Phase{Name: name, Duration: now.Sub(m.last)})
	m.last = now
}

func phaseAttrs(ps []Phase) []any {
	var out []any
	for _, p := range ps {
		out = append(out, p.Name, p.Duration)
	}
	return out
}

func (m *outgoing) bytes() int64 {
	n := m.filesSent.Load()
	if t := m.pages.Load(); t != nil {
		n += t.Sent.Load()
	}
	return n
}

func (m *outgoing) progress(phase string) {
	if m.req.Progress != nil {
		m.req.Progress(MigrateProgress{Phase: phase, Bytes: m.bytes(), Total: m.offerTotal()})
	}
}

func (m *outgoing) offerTotal() int64 {
	if m.offer == nil {
		return 0
	}
	return m.offer.MemoryBytes
}

// reportProgress reports the transfer five times a second until stopped.
func (m *outgoing) reportProgress() (stop func()) {
	if m.req.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if !m.restoring.Load() {
					m.progress("transfer")
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}
