package wasm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

// pluginStats are the counters of one plugin name. They live in the Host and
// survive reloads, so /metrics counters never go backwards.
type pluginStats struct {
	name string

	calls      atomic.Uint64
	traps      atomic.Uint64
	timeouts   atomic.Uint64
	violations atomic.Uint64
	exhausted  atomic.Uint64
	replaced   atomic.Uint64

	// Time split of the work, for the benchmark's overhead table: waiting
	// for an instance, inside guest calls (host functions included), and
	// inside host functions alone.
	acquireNs atomic.Uint64
	callNs    atomic.Uint64
	hostNs    atomic.Uint64
	hostCalls atomic.Uint64

	mu         sync.Mutex
	lastErr    string
	lastErrAt  int64 // unix nanos
	metricIDs  map[string]int32
	metricList atomic.Pointer[[]observe.PluginSeries]
}

func (s *pluginStats) setErr(msg string, at int64) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = msg, at
	s.mu.Unlock()
}

func (s *pluginStats) lastError() (string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.lastErrAt
}

// maxGuestMetrics bounds the metrics one plugin name may define.
const maxGuestMetrics = 256

// define returns the id of a guest metric, defining it on first use.
func (s *pluginStats) define(h *Host, kind abi.MetricKind, name, help string) (int32, error) {
	ok := observe.PluginMetricKind(kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []observe.PluginSeries
	if p := s.metricList.Load(); p != nil {
		list = *p
	}
	if id, found := s.metricIDs[name]; found {
		if list[id].Kind() != ok {
			return -1, fmt.Errorf("wasm: metric %q already defined with another kind", name)
		}
		return id, nil
	}
	if len(list) >= maxGuestMetrics {
		return -1, fmt.Errorf("wasm: plugin %q defined more than %d metrics", s.name, maxGuestMetrics)
	}
	f, err := h.families.Family(ok, name, help)
	if err != nil {
		return -1, fmt.Errorf("wasm: %w", err)
	}
	m, err := f.Series(s.name)
	if err != nil {
		return -1, fmt.Errorf("wasm: metric %q: %w", name, err)
	}
	next := append(append([]observe.PluginSeries(nil), list...), m)
	s.metricList.Store(&next)
	if s.metricIDs == nil {
		s.metricIDs = map[string]int32{}
	}
	id := int32(len(next) - 1)
	s.metricIDs[name] = id
	return id, nil
}

// record adds to a counter, sets a gauge or observes a histogram. Unknown
// ids and invalid values are ignored.
func (s *pluginStats) record(id int32, v float64) {
	p := s.metricList.Load()
	if p == nil || id < 0 || int(id) >= len(*p) {
		return
	}
	(*p)[id].Record(v)
}

// collector exports the host's per-plugin counters and pool gauges,
// reading atomics at scrape time so the request path pays nothing.
type collector struct{ h *Host }

var (
	descCalls      = prometheus.NewDesc("wasmgate_wasm_calls_total", "Guest calls (handle_request and handle_response).", []string{"plugin"}, nil)
	descFailures   = prometheus.NewDesc("wasmgate_wasm_failures_total", "Failed guest calls by reason: trap, timeout, violation, pool_exhausted.", []string{"plugin", "reason"}, nil)
	descReplaced   = prometheus.NewDesc("wasmgate_wasm_instances_replaced_total", "Instances discarded after a trap, timeout or memory exhaustion and replaced.", []string{"plugin"}, nil)
	descInstances  = prometheus.NewDesc("wasmgate_wasm_instances", "Instances of live plugins by state: idle or in_use.", []string{"plugin", "state"}, nil)
	descWaiting    = prometheus.NewDesc("wasmgate_wasm_pool_waiting", "Requests waiting for a free instance.", []string{"plugin"}, nil)
	descMemoryPage = prometheus.NewDesc("wasmgate_wasm_memory_limit_bytes", "Memory limit per instance.", []string{"plugin"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCalls, descFailures, descReplaced, descInstances, descWaiting, descMemoryPage} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	h.mu.Lock()
	stats := make([]*pluginStats, 0, len(h.stats))
	for _, s := range h.stats {
		stats = append(stats, s)
	}
	type poolView struct {
		name                 string
		idle, inUse, waiting float64
		limit                float64
	}
	pools := map[string]*poolView{}
	for p := range h.plugins {
		v := pools[p.name]
		if v == nil {
			v = &poolView{name: p.name}
			pools[p.name] = v
		}
		v.idle += float64(len(p.pool.free))
		v.inUse += float64(p.pool.inUse.Load())
		v.waiting += float64(p.pool.waiting.Load())
		v.limit = float64(p.rt.pages) * 65536
	}
	h.mu.Unlock()
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(s.calls.Load()), s.name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.traps.Load()), s.name, "trap")
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.timeouts.Load()), s.name, "timeout")
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.violations.Load()), s.name, "violation")
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.exhausted.Load()), s.name, "pool_exhausted")
		ch <- prometheus.MustNewConstMetric(descReplaced, prometheus.CounterValue, float64(s.replaced.Load()), s.name)
	}
	for _, v := range pools {
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, v.idle, v.name, "idle")
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, v.inUse, v.name, "in_use")
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, v.waiting, v.name)
		ch <- prometheus.MustNewConstMetric(descMemoryPage, prometheus.GaugeValue, v.limit, v.name)
	}
}
