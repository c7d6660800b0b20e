package observe

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// PluginMetricKind is the kind of a metric a plugin defines. The values are
// the wasmgate ABI's metric kinds (abi), so hosts convert with a
// cast.
type PluginMetricKind uint32

// Kinds of plugin metrics.
const (
	PluginCounter PluginMetricKind = iota
	PluginGauge
	PluginHistogram
)

// pluginMetricName is what Prometheus accepts as a metric name.
var pluginMetricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// PluginFamilies keeps the metric families plugins define: one family per
// name, labelled by plugin, registered on first use. Both plugin hosts
// (Wasm and process) use it, so their plugins' metrics behave alike.
type PluginFamilies struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	m   map[string]*PluginFamily
}

// NewPluginFamilies returns families registered with reg (nil: not
// exported, for tests).
func NewPluginFamilies(reg prometheus.Registerer) *PluginFamilies {
	return &PluginFamilies{reg: reg, m: map[string]*PluginFamily{}}
}

// PluginFamily is the family of one plugin metric name.
type PluginFamily struct {
	kind PluginMetricKind
	own  bool // registered by these families (not adopted)
	cv   *prometheus.CounterVec
	gv   *prometheus.GaugeVec
	hv   *prometheus.HistogramVec
}

// Family returns the family of name, creating and registering it on first
// use. Names under the proxy's own "wasmgate_" prefix are refused, so a
// plugin can never write into (or break) a proxy metric; a family another
// host in this process registered with the same kind is shared.
func (p *PluginFamilies) Family(kind PluginMetricKind, name, help string) (*PluginFamily, error) {
	if !pluginMetricName.MatchString(name) {
		return nil, fmt.Errorf("invalid metric name %q", name)
	}
	if strings.HasPrefix(name, Namespace+"_") {
		return nil, fmt.Errorf("metric name %q: the %s_ prefix is the proxy's", name, Namespace)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.m[name]; ok {
		if f.kind != kind {
			return nil, fmt.Errorf("metric %q already defined with another kind", name)
		}
		return f, nil
	}
	if help == "" {
		help = "Plugin metric " + name + "."
	}
	f := &PluginFamily{kind: kind}
	labels := []string{"plugin"}
	var c prometheus.Collector
	switch kind {
	case PluginCounter:
		f.cv = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		c = f.cv
	case PluginGauge:
		f.gv = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		c = f.gv
	case PluginHistogram:
		f.hv = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help}, labels)
		c = f.hv
	default:
		return nil, fmt.Errorf("metric %q: unknown kind %d", name, kind)
	}
	if p.reg != nil {
		err := p.reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
			f.own = true
		case !errors.As(err, &are) || !f.adopt(are.ExistingCollector):
			return nil, fmt.Errorf("register metric %q: %w", name, err)
		}
	}
	p.m[name] = f
	return f, nil
}

// Close unregisters the families these families registered themselves.
func (p *PluginFamilies) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, f := range p.m {
		if f.own && p.reg != nil {
			switch {
			case f.cv != nil:
				p.reg.Unregister(f.cv)
			case f.gv != nil:
				p.reg.Unregister(f.gv)
			case f.hv != nil:
				p.reg.Unregister(f.hv)
			}
		}
		delete(p.m, name)
	}
}

// adopt takes over an already registered family of the same kind (the
// other plugin host's; the prefix rule keeps proxy metrics out).
func (f *PluginFamily) adopt(c prometheus.Collector) bool {
	switch ex := c.(type) {
	case *prometheus.CounterVec:
		if f.kind == PluginCounter {
			f.cv = ex
			return true
		}
	case *prometheus.GaugeVec:
		if f.kind == PluginGauge {
			f.gv = ex
			return true
		}
	case *prometheus.HistogramVec:
		if f.kind == PluginHistogram {
			f.hv = ex
			return true
		}
	}
	return false
}

// Kind returns the family's kind.
func (f *PluginFamily) Kind() PluginMetricKind { return f.kind }

// Series returns plugin's series of the family.
func (f *PluginFamily) Series(plugin string) (PluginSeries, error) {
	s := PluginSeries{kind: f.kind}
	var err error
	switch f.kind {
	case PluginCounter:
		s.c, err = f.cv.GetMetricWithLabelValues(plugin)
	case PluginGauge:
		s.g, err = f.gv.GetMetricWithLabelValues(plugin)
	case PluginHistogram:
		s.o, err = f.hv.GetMetricWithLabelValues(plugin)
	}
	return s, err
}

// PluginSeries is one plugin's series of a plugin metric.
type PluginSeries struct {
	kind PluginMetricKind
	c    prometheus.Counter
	g    prometheus.Gauge
	o    prometheus.Observer
}

// Record adds v to a counter, sets a gauge or observes v in a histogram.
// NaN, and negative or infinite counter increments, are ignored: a plugin
// cannot make a counter go backwards or break the exposition.
func (s PluginSeries) Record(v float64) {
	if math.IsNaN(v) {
		return
	}
	switch s.kind {
	case PluginCounter:
		if v >= 0 && !math.IsInf(v, 0) {
			s.c.Add(v)
		}
	case PluginGauge:
		s.g.Set(v)
	case PluginHistogram:
		s.o.Observe(v)
	}
}

// Kind returns the series' kind.
func (s PluginSeries) Kind() PluginMetricKind { return s.kind }
