package sdk

import (
	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// metric is a lazily defined host metric: it is defined when first used
// with a host (or at creation when a host is present), and again when the
// host changes (sdktest installs a fresh host per run).
type metric struct {
	kind abi.MetricKind
	name string
	help string
	id   int32
	gen  uint64
}

func newMetric(kind abi.MetricKind, name, help string) metric {
	m := metric{kind: kind, name: name, help: help, id: -1}
	if h, gen := hostabi.Current(); h != nil {
		m.define(h, gen)
	}
	return m
}

func (m *metric) define(h hostabi.Host, gen uint64) {
	m.id = h.MetricDefine(uint32(m.kind), m.name, m.help)
	m.gen = gen
	if m.id < 0 {
		h.Log(int32(LevelError), "sdk: metric "+m.name+" refused by the host")
	}
}

func (m *metric) record(v float64) {
	h, gen := hostabi.Current()
	if h == nil {
		return
	}
	if gen != m.gen {
		m.define(h, gen)
	}
	if m.id >= 0 {
		h.MetricRecord(m.id, v)
	}
}

// Counter is a monotonically increasing metric, exported by the proxy on
// /metrics with the plugin's name as a label.
type Counter struct{ m metric }

// NewCounter defines a counter. Names follow Prometheus rules
// ([a-zA-Z_:][a-zA-Z0-9_:]*); define metrics once, in a package variable
// or in Configure.
func NewCounter(name, help string) *Counter {
	return &Counter{m: newMetric(abi.MetricCounter, name, help)}
}

// Add adds v (>= 0) to the counter.
func (c *Counter) Add(v float64) { c.m.record(v) }

// Inc adds 1 to the counter.
func (c *Counter) Inc() { c.m.record(1) }

// Gauge is a metric that goes up and down.
type Gauge struct{ m metric }

// NewGauge defines a gauge; see NewCounter.
func NewGauge(name, help string) *Gauge {
	return &Gauge{m: newMetric(abi.MetricGauge, name, help)}
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.m.record(v) }

// Histogram samples observations into the host's default buckets.
type Histogram struct{ m metric }

// NewHistogram defines a histogram; see NewCounter.
func NewHistogram(name, help string) *Histogram {
	return &Histogram{m: newMetric(abi.MetricHistogram, name, help)}
}

// Observe adds one observation v.
func (h *Histogram) Observe(v float64) { h.m.record(v) }
