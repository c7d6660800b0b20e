package observe

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// Namespace prefixes every wasmgate metric.
const Namespace = "wasmgate"

// NoRoute is the route label of requests that matched no route.
const NoRoute = "none"

// durationBuckets are the classic buckets of the request duration histogram,
// kept beside the native (sparse) buckets for scrapers without native
// histogram support.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// filterBuckets cover filter run times, which are micro- to milliseconds.
var filterBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05}

// Metrics are the process-wide Prometheus metrics of the proxy core. Create
// one per process with NewMetrics and share it across snapshots: series
// survive reloads. All methods are safe for concurrent use.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	bytesIn     *prometheus.CounterVec
	bytesOut    *prometheus.CounterVec
	active      prometheus.Gauge
	reloads     *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastOKTime  prometheus.Gauge
	configInfo  *prometheus.GaugeVec
	buildInfo   *prometheus.GaugeVec
	filterRuns  *prometheus.CounterVec
	filterTook  *prometheus.HistogramVec
	infoMu      sync.Mutex
	series      sync.Map // seriesKey -> *requestSeries
	filterCache sync.Map // filterKey -> prometheus.Observer
}

var _ filter.Observer = (*Metrics)(nil)

type seriesKey struct {
	route, method string
	code          int
}

type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
}

type filterKey struct{ filter, kind, action string }

// NewMetrics creates the metrics and registers them with reg. Registering
// twice with the same registry fails: create Metrics once per process.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_total",
			Help: "Requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:                            "Time from the request's arrival to the end of its response, by route and method.",
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"route", "method"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_body_bytes_total",
			Help: "Request body bytes read from clients, by route.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "response_body_bytes_total",
			Help: "Response body bytes written to clients, by route.",
		}, []string{"route"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "http", Name: "active_requests",
			Help: "Requests being served right now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "config", Name: "reloads_total",
			Help: "Config reload attempts, by result (ok or error).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "last_reload_successful",
			Help: "1 when the last reload attempt succeeded, 0 when it was refused.",
		}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config that went live.",
		}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "info",
			Help: "Always 1; the version label is the hash of the config serving now.",
		}, []string{"version"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help: "Always 1; labels describe the running binary.",
		}, []string{"version", "goversion"}),
		filterRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "filter", Name: "decisions_total",
			Help: "Filter runs, by filter, kind and action (continue, respond, error, fail_open).",
		}, []string{"filter", "kind", "action"}),
		filterTook: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "filter", Name: "duration_seconds",
			Help:                            "Time one filter phase took, by filter and kind.",
			Buckets:                         filterBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"filter", "kind"}),
	}
	cs := []prometheus.Collector{m.requests, m.duration, m.bytesIn, m.bytesOut, m.active,
		m.reloads, m.lastOK, m.lastOKTime, m.configInfo, m.buildInfo, m.filterRuns, m.filterTook}
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, c := range cs {
			reg.Unregister(c)
		}
		return nil, fmt.Errorf("observe: register metrics: %w", err)
	}
	// Both results exist from the start so rate() works on the first error.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.SetBuildVersion(buildVersion())
	return m, nil
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// ready for NewMetrics and the admin /metrics endpoint.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// SetBuildVersion replaces the version label of wasmgate_build_info (main
// sets it from its -ldflags version; the default is the module version).
func (m *Metrics) SetBuildVersion(version string) {
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// RequestStarted counts a request as active; call RequestDone when it ends.
func (m *Metrics) RequestStarted() { m.active.Inc() }

// RequestDone records a finished request: it leaves the active gauge and is
// counted by route, method and status code with its duration and body bytes.
// An empty route is recorded as NoRoute; unusual methods as "OTHER".
func (m *Metrics) RequestDone(route, method string, code int, took time.Duration, bytesIn, bytesOut int64) {
	m.active.Dec()
	if route == "" {
		route = NoRoute
	}
	method = normalMethod(method)
	k := seriesKey{route, method, code}
	s, ok := m.series.Load(k)
	if !ok {
		s, _ = m.series.LoadOrStore(k, &requestSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(route, method),
			bytesIn:  m.bytesIn.WithLabelValues(route),
			bytesOut: m.bytesOut.WithLabelValues(route),
		})
	}
	rs := s.(*requestSeries)
	rs.requests.Inc()
	rs.duration.Observe(took.Seconds())
	if bytesIn > 0 {
		rs.bytesIn.Add(float64(bytesIn))
	}
	if bytesOut > 0 {
		rs.bytesOut.Add(float64(bytesOut))
	}
}

// FilterDone implements filter.Observer: it counts one filter run by action
// and records how long it took.
func (m *Metrics) FilterDone(name, kind, action string, took time.Duration) {
	k := filterKey{name, kind, action}
	c, ok := m.filterCache.Load(k)
	if !ok {
		c, _ = m.filterCache.LoadOrStore(k, m.filterRuns.WithLabelValues(name, kind, action))
	}
	c.(prometheus.Counter).Inc()
	d := filterKey{name, kind, ""}
	o, ok := m.filterCache.Load(d)
	if !ok {
		o, _ = m.filterCache.LoadOrStore(d, m.filterTook.WithLabelValues(name, kind))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

// ReloadDone records a reload attempt. On success (err == nil) version
// becomes the wasmgate_config_info version label; on failure the serving
// version is left alone.
func (m *Metrics) ReloadDone(err error, version string) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		m.lastOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.lastOK.Set(1)
	m.lastOKTime.SetToCurrentTime()
	m.SetConfigVersion(version)
}

// SetConfigVersion sets the version label of wasmgate_config_info without
// counting a reload (for the config loaded at start).
func (m *Metrics) SetConfigVersion(version string) {
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(version).Set(1)
}

// normalMethod bounds the method label to the standard methods.
func normalMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}
