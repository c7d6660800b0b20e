package upstream

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the upstream Prometheus metrics. Create them once per process
// with NewMetrics and pass the same value to every NewSet (reloads included):
// counters keep counting across reloads and the gauges always describe the
// newest Set that has a cluster of that name.
type Metrics struct {
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	retries     *prometheus.CounterVec
	budget      *prometheus.CounterVec
	timeouts    *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	mirror      *prometheus.CounterVec
	conns       *prometheus.CounterVec
	healthDesc  *prometheus.Desc
	breakerDesc *prometheus.Desc
	activeDesc  *prometheus.Desc

	mu   sync.Mutex
	sets []*Set // live sets, oldest first
}

// NewMetrics creates the upstream metrics and registers them with reg (when
// reg is not nil). Call it once per process.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	cl := []string{"cluster"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_requests_total",
			Help: "Upstream tries by cluster and response class (2xx..5xx, or error).",
		}, []string{"cluster", "class"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_errors_total",
			Help: "Upstream failures by cluster and kind (connect, reset, timeout, overloaded, no_healthy).",
		}, []string{"cluster", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_retries_total",
			Help: "Upstream retries made, by cluster.",
		}, cl),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_retry_budget_exhausted_total",
			Help: "Retries not made because the retry budget was spent, by cluster.",
		}, cl),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_timeouts_total",
			Help: "Upstream per-try and overall timeouts, by cluster.",
		}, cl),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_ejections_total",
			Help: "Outlier ejections, by cluster.",
		}, cl),
		mirror: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_mirror_requests_total",
			Help: "Mirrored requests by shadow cluster and result (sent, dropped_full, skipped_body, error).",
		}, []string{"cluster", "result"}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_connections_total",
			Help: "Upstream TCP connections by cluster and event: opened, or stale (a pooled HTTP/1.1 connection found, on reuse, closed by the upstream or holding bytes nobody asked for; it is dropped, and a request already sent on it again if it may be).",
		}, []string{"cluster", "event"}),
		healthDesc: prometheus.NewDesc("wasmgate_upstream_endpoint_healthy",
			"1 when the endpoint receives traffic (health check passing and not ejected), else 0.",
			[]string{"cluster", "endpoint"}, nil),
		breakerDesc: prometheus.NewDesc("wasmgate_upstream_circuit_breaker_open",
			"1 when the cluster's circuit breaker has no free request slot, else 0.",
			cl, nil),
		activeDesc: prometheus.NewDesc("wasmgate_upstream_active_requests",
			"Requests in flight to the cluster (including streaming bodies).",
			cl, nil),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.errors, m.retries, m.budget, m.timeouts, m.ejections, m.mirror, m.conns, m} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("upstream: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.healthDesc
	ch <- m.breakerDesc
	ch <- m.activeDesc
}

// Collect implements prometheus.Collector: it reads the live state of the
// newest Set holding each cluster.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	sets := append([]*Set(nil), m.sets...)
	m.mu.Unlock()
	seen := map[string]bool{}
	for i := len(sets) - 1; i >= 0; i-- {
		for _, c := range sets[i].ordered {
			if seen[c.name] {
				continue
			}
			seen[c.name] = true
			ch <- prometheus.MustNewConstMetric(m.activeDesc, prometheus.GaugeValue, float64(c.active.Load()), c.name)
			ch <- prometheus.MustNewConstMetric(m.breakerDesc, prometheus.GaugeValue, boolFloat(c.breaker.open()), c.name)
			now := nowNano()
			for _, e := range c.tab.Load().all {
				ch <- prometheus.MustNewConstMetric(m.healthDesc, prometheus.GaugeValue, boolFloat(e.available(now)), c.name, e.addr)
			}
		}
	}
}

func (m *Metrics) add(s *Set) {
	m.mu.Lock()
	m.sets = append(m.sets, s)
	m.mu.Unlock()
}

func (m *Metrics) remove(s *Set) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.sets {
		if x == s {
			m.sets = append(m.sets[:i], m.sets[i+1:]...)
			return
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// clusterMetrics are the counters of one cluster, bound once.
type clusterMetrics struct {
	class                                [6]prometheus.Counter // 0: error, 1..5: 1xx..5xx
	connect, reset, timeout, overloaded  prometheus.Counter
	noHealthy                            prometheus.Counter
	retries, budget, timeouts, ejections prometheus.Counter
	mirrorSent, mirrorFull, mirrorBody   prometheus.Counter
	mirrorErr                            prometheus.Counter
	connOpened, connStale                prometheus.Counter
}

func (m *Metrics) bind(name string) *clusterMetrics {
	cm := &clusterMetrics{}
	cm.class[0] = m.requests.WithLabelValues(name, "error")
	for i := 1; i <= 5; i++ {
		cm.class[i] = m.requests.WithLabelValues(name, fmt.Sprintf("%dxx", i))
	}
	cm.connect = m.errors.WithLabelValues(name, "connect")
	cm.reset = m.errors.WithLabelValues(name, "reset")
	cm.timeout = m.errors.WithLabelValues(name, "timeout")
	cm.overloaded = m.errors.WithLabelValues(name, "overloaded")
	cm.noHealthy = m.errors.WithLabelValues(name, "no_healthy")
	cm.retries = m.retries.WithLabelValues(name)
	cm.budget = m.budget.WithLabelValues(name)
	cm.timeouts = m.timeouts.WithLabelValues(name)
	cm.ejections = m.ejections.WithLabelValues(name)
	cm.mirrorSent = m.mirror.WithLabelValues(name, "sent")
	cm.mirrorFull = m.mirror.WithLabelValues(name, "dropped_full")
	cm.mirrorBody = m.mirror.WithLabelValues(name, "skipped_body")
	cm.mirrorErr = m.mirror.WithLabelValues(name, "error")
	cm.connOpened = m.conns.WithLabelValues(name, "opened")
	cm.connStale = m.conns.WithLabelValues(name, "stale")
	return cm
}

func (cm *clusterMetrics) status(code int) {
	i := code / 100
	if i < 1 || i > 5 {
		i = 5
	}
	cm.class[i].Inc()
}
