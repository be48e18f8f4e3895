// Package metrics serves ckptd's Prometheus metrics: counts and durations
// taken from the event stream, store sizes read at each scrape.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/store"
)

// Lister lists checkpoints; *store.Store is the real one.
type Lister interface {
	List(ctx context.Context, f store.Filter) ([]*store.Checkpoint, error)
}

// Metrics holds ckptd's metrics in its own registry.
type Metrics struct {
	reg      *prometheus.Registry
	created  *prometheus.CounterVec
	frozen   prometheus.Histogram
	create   prometheus.Histogram
	seal     prometheus.Histogram
	restored prometheus.Counter
	restore  prometheus.Histogram
	failures *prometheus.CounterVec
	removed  *prometheus.CounterVec
	written  prometheus.Counter
	skipped  *prometheus.CounterVec
	migrated prometheus.Counter
	scrubbed prometheus.Counter
	slept    prometheus.Counter
	woken    prometheus.Counter
	wake     prometheus.Histogram
}

// New builds the metrics; Run feeds them from hub.
func New(st Lister) *Metrics {
	secs := prometheus.ExponentialBuckets(0.01, 2, 14) // 10 ms .. 82 s
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckptd_checkpoints_created_total",
			Help: "Checkpoints committed, by target kind."}, []string{"kind"}),
		frozen: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ckptd_checkpoint_frozen_seconds",
			Help: "Target downtime of each checkpoint (CRIU's frozen_time).", Buckets: secs}),
		create: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ckptd_checkpoint_duration_seconds",
			Help: "Wall time of each create, until sealed.", Buckets: secs}),
		seal: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ckptd_checkpoint_seal_seconds",
			Help: "Time from a checkpoint's commit to its seal.", Buckets: secs}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_restores_total", Help: "Restores that ran."}),
		restore: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ckptd_restore_duration_seconds",
			Help: "Wall time of each restore.", Buckets: secs}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckptd_failures_total",
			Help: "Failed operations, by operation."}, []string{"op"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckptd_checkpoints_removed_total",
			Help: "Checkpoints removed, by why: rm, retention, quarantine."}, []string{"by"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_bytes_written_total",
			Help: "Bytes of sealed checkpoints."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckptd_scheduled_ticks_skipped_total",
			Help: "Scheduled ticks skipped because the previous checkpoint was still running."}, []string{"target"}),
		migrated: prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_migrations_total", Help: "Migrations out that finished."}),
		scrubbed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_scrub_bytes_total", Help: "Bytes the scrub read."}),
		slept:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_hibernations_total", Help: "Workloads scaled to zero."}),
		woken:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ckptd_wakes_total", Help: "Hibernated workloads woken."}),
		wake: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ckptd_wake_seconds",
			Help: "Time to wake a hibernated workload (its restore), while its first connection waits.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	m.reg.MustRegister(m.created, m.frozen, m.create, m.seal, m.restored, m.restore, m.failures, m.removed,
		m.written, m.skipped, m.migrated, m.scrubbed, m.slept, m.woken, m.wake, &storeCollector{st: st},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Run feeds the metrics from hub until ctx ends.
func (m *Metrics) Run(ctx context.Context, hub *events.Hub) {
	sub, cancel := hub.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C:
			m.observe(e)
		}
	}
}

func (m *Metrics) observe(e events.Event) {
	switch e.Kind {
	case events.Created:
		m.created.WithLabelValues(kindOf(e.Target)).Inc()
		m.create.Observe(e.Duration.Seconds())
		if e.Frozen > 0 {
			m.frozen.Observe(e.Frozen.Seconds())
		}
	case events.Sealed:
		m.seal.Observe(max(e.Duration, 0).Seconds())
		m.written.Add(float64(e.Bytes))
	case events.Restored:
		m.restored.Inc()
		m.restore.Observe(e.Duration.Seconds())
	case events.Failed:
		m.failures.WithLabelValues(e.Op).Inc()
	case events.Removed:
		m.removed.WithLabelValues("rm").Inc()
	case events.Pruned:
		m.removed.WithLabelValues("retention").Inc()
	case events.Quarantined:
		m.removed.WithLabelValues("quarantine").Inc()
	case events.Skipped:
		m.skipped.WithLabelValues(e.Target).Inc()
	case events.Migrated:
		m.migrated.Inc()
	case events.ScrubPassEnded:
		m.scrubbed.Add(float64(e.Bytes))
	case events.Hibernated:
		m.slept.Inc()
	case events.Woken:
		m.woken.Inc()
		m.wake.Observe(e.Duration.Seconds())
	}
}

// kindOf is the kind in a target key ("workload/x" -> "workload").
func kindOf(key string) string {
	for i := range key {
		if key[i] == '/' {
			return key[:i]
		}
	}
	return key
}

// Listen opens the metrics address, so that a bad one fails the start.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves /metrics on ln until ctx ends.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving metrics", "address", ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// storeCollector reports the store's size per target at each scrape.
type storeCollector struct{ st Lister }

var (
	storeBytes  = prometheus.NewDesc("ckptd_store_bytes", "Bytes of sealed checkpoints, by target.", []string{"target"}, nil)
	storeCount  = prometheus.NewDesc("ckptd_store_checkpoints", "Checkpoints in the store, by target.", []string{"target"}, nil)
	sealingDesc = prometheus.NewDesc("ckptd_checkpoints_sealing", "Checkpoints committed but not yet sealed.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeBytes
	ch <- storeCount
	ch <- sealingDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	cs, err := c.st.List(context.Background(), store.Filter{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(storeBytes, err)
		return
	}
	bytes, count, sealing := map[string]int64{}, map[string]int{}, 0
	for _, ck := range cs {
		key := ck.Target.Key()
		count[key]++
		bytes[key] += ck.Size()
		if ck.IsSealing() {
			sealing++
		}
	}
	for key, n := range count {
		ch <- prometheus.MustNewConstMetric(storeCount, prometheus.GaugeValue, float64(n), key)
		ch <- prometheus.MustNewConstMetric(storeBytes, prometheus.GaugeValue, float64(bytes[key]), key)
	}
	ch <- prometheus.MustNewConstMetric(sealingDesc, prometheus.GaugeValue, float64(sealing))
}
