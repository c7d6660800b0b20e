package listener

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/proxy/observe"
)

// Metrics are the listener-level Prometheus collectors. Create them once per
// process with NewMetrics and pass them to every Listener through Options.
type Metrics struct {
	active    *prometheus.GaugeVec
	accepted  *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	tooEarly  *prometheus.CounterVec
	sniffFail *prometheus.CounterVec
	smuggling *prometheus.CounterVec
	handshake *prometheus.CounterVec
}

// NewMetrics registers the listener collectors on reg. Registering twice on
// the same registry returns the collectors already there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wasmgate_listener_active_connections",
			Help: "Open downstream connections per listener and transport (tcp, quic).",
		}, []string{"listener", "transport"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_listener_connections_total",
			Help: "Accepted downstream connections per listener and transport (tcp, quic).",
		}, []string{"listener", "transport"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_tls_cert_reload_total",
			Help: "Reloads of listener certificates and client CAs from disk, by result (ok, error).",
		}, []string{"listener", "result"}),
		tooEarly: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_http3_too_early_total",
			Help: "HTTP/3 requests refused with 425 because they arrived in 0-RTT with an unsafe method.",
		}, []string{"listener"}),
		sniffFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_listener_sniff_failures_total",
			Help: "Connections closed before their first byte arrived on listeners that accept TLS and plaintext.",
		}, []string{"listener"}),
		smuggling: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_listener_ambiguous_framing_total",
			Help: "HTTP/1 requests refused with 400 because they carried both Content-Length and Transfer-Encoding.",
		}, []string{"listener"}),
		handshake: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_listener_tls_handshake_failures_total",
			Help: "TCP connections closed because their TLS handshake failed or timed out (bad or missing client certificate, plain HTTP to a TLS port, silence).",
		}, []string{"listener"}),
	}
	var err error
	m.active, err = observe.Register(reg, m.active)
	if err != nil {
		return nil, err
	}
	if m.accepted, err = observe.Register(reg, m.accepted); err != nil {
		return nil, err
	}
	if m.reloads, err = observe.Register(reg, m.reloads); err != nil {
		return nil, err
	}
	if m.tooEarly, err = observe.Register(reg, m.tooEarly); err != nil {
		return nil, err
	}
	if m.sniffFail, err = observe.Register(reg, m.sniffFail); err != nil {
		return nil, err
	}
	if m.smuggling, err = observe.Register(reg, m.smuggling); err != nil {
		return nil, err
	}
	if m.handshake, err = observe.Register(reg, m.handshake); err != nil {
		return nil, err
	}
	return m, nil
}

// listenerMetrics are the children of Metrics for one listener; the zero
// value (nil Metrics) records nothing.
type listenerMetrics struct {
	tcpActive, quicActive     prometheus.Gauge
	tcpAccepted, quicAccepted prometheus.Counter
	reloadOK, reloadErr       prometheus.Counter
	tooEarly                  prometheus.Counter
	sniffFail                 prometheus.Counter
	smuggling                 prometheus.Counter
	handshakeFail             prometheus.Counter
}

func (m *Metrics) forListener(name string) listenerMetrics {
	if m == nil {
		return listenerMetrics{}
	}
	return listenerMetrics{
		tcpActive:     m.active.WithLabelValues(name, "tcp"),
		quicActive:    m.active.WithLabelValues(name, "quic"),
		tcpAccepted:   m.accepted.WithLabelValues(name, "tcp"),
		quicAccepted:  m.accepted.WithLabelValues(name, "quic"),
		reloadOK:      m.reloads.WithLabelValues(name, "ok"),
		reloadErr:     m.reloads.WithLabelValues(name, "error"),
		tooEarly:      m.tooEarly.WithLabelValues(name),
		sniffFail:     m.sniffFail.WithLabelValues(name),
		smuggling:     m.smuggling.WithLabelValues(name),
		handshakeFail: m.handshake.WithLabelValues(name),
	}
}

func add(g prometheus.Gauge, v float64) {
	if g != nil {
		g.Add(v)
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}
