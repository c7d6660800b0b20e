// Package sdktest runs a plugin's registered handlers in-process, without
// Wasm, against a fake host, so plugin authors test with plain "go test".
//
//	func TestAddsHeader(t *testing.T) {
//		res := sdktest.Run(t, `{"name":"X-Hello","value":"world"}`,
//			sdktest.NewRequest("GET", "/", ""))
//		if got := res.Request.Header.Get("X-Hello"); got != "world" {
//			t.Fatalf("X-Hello = %q", got)
//		}
//	}
//
// The plugin package registers its handler in init, as it does in Wasm;
// sdktest calls that handler. The fake host follows the proxy's semantics:
// buffer features, first body write replaces and later writes append,
// per-request values, shared counters and key/values with expiry (on a fake
// clock, see Host.Advance), metrics and logs captured for assertions.
//
// The SDK's host is process-wide, so runs are serialized: tests may call
// t.Parallel, they just do not run plugin code at the same time.
package sdktest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// runMu serializes everything that installs a host.
var runMu sync.Mutex

// NewRequest returns a request as a client would send it to the proxy:
// target may be a path ("/a?b=1") or an absolute URL; body may be empty.
// RemoteAddr is 192.0.2.1:1234.
func NewRequest(method, target, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return httptest.NewRequest(method, target, r)
}

// Run configures the registered plugin with cfgJSON on a new Host (the
// test fails if the plugin refuses the config) and runs req through it.
func Run(t testing.TB, cfgJSON string, req *http.Request) Result {
	t.Helper()
	h := New(t)
	if err := h.Configure(cfgJSON); err != nil {
		t.Fatalf("sdktest: plugin refused config %s: %v", cfgJSON, err)
	}
	return h.Run(req)
}

// ConfigError configures the registered plugin with cfgJSON on a new Host
// and returns the plugin's refusal (nil when it accepted the config).
func ConfigError(t testing.TB, cfgJSON string) error {
	t.Helper()
	return New(t).Configure(cfgJSON)
}

// LogEntry is one line the plugin logged.
type LogEntry struct {
	Level sdk.LogLevel
	Msg   string
}

// Metric is what a plugin recorded on one metric.
type Metric struct {
	// Kind is "counter", "gauge" or "histogram".
	Kind string
	// Help is the metric's help text.
	Help string
	// Value is the counter's total, the gauge's last value or the
	// histogram's sum.
	Value float64
	// Observations are a histogram's observations in order.
	Observations []float64
}

// Result is the outcome of one request through the plugin.
type Result struct {
	// Action is what OnRequest returned.
	Action sdk.Action
	// Status, Header and Body are the response the client gets: the local
	// answer after Stop, otherwise the upstream's after OnResponse.
	Status int
	Header http.Header
	Body   []byte
	// Request is the request as the upstream saw it (after the plugin's
	// changes), also filled after Stop to show the changes made.
	Request *http.Request
	// RequestBody is Request's body.
	RequestBody []byte
	// UpstreamCalled reports whether the request reached the upstream.
	UpstreamCalled bool
	// Values are the per-request values at the end of the request.
	Values map[string]string
	// Logs are the lines logged during this request.
	Logs []LogEntry
}

// Host is a fake proxy for one plugin. Its counters, key/values, metrics and
// clock persist across Run calls; requests, values and features do not.
type Host struct {
	t testing.TB

	// Properties are request properties (sdk.Prop* names) added to or
	// overriding the defaults (client_addr/client_ip from RemoteAddr,
	// protocol, tls, mode "edge", route "test", request_id).
	Properties map[string]string
	// Upstream answers requests the plugin continues. Default: 200 with
	// body "upstream\n".
	Upstream http.Handler
	// UpstreamError makes the upstream fail: the client gets 502 and
	// OnResponse sees resp.IsError.
	UpstreamError bool
	// LogLevel is the lowest level the plugin logs at. Default debug.
	LogLevel sdk.LogLevel
	// Values are per-request values present before the plugin runs, as
	// earlier filters in the chain would have set them (e.g. "jwt.sub").
	Values map[string]string

	mu        sync.Mutex
	now       time.Time
	config    []byte
	features  uint32
	counters  map[string]*counter
	kv        map[string]kvEntry
	metrics   []*Metric
	metricIDs map[string]int32
	logs      []LogEntry
	requests  int
}

type counter struct {
	value   int64
	expires time.Time
}

type kvEntry struct {
	value   []byte
	expires time.Time // zero: never
}

// New returns a fake host for the plugin registered in this test binary.
func New(t testing.TB) *Host {
	return &Host{
		t:         t,
		LogLevel:  sdk.LevelDebug,
		now:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		counters:  map[string]*counter{},
		kv:        map[string]kvEntry{},
		metricIDs: map[string]int32{},
	}
}

// Advance moves the host's clock, expiring counters and key/values.
func (h *Host) Advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

// Configure runs the plugin's config check with cfgJSON ("" for none) and
// returns its refusal.
func (h *Host) Configure(cfgJSON string) error {
	h.t.Helper()
	p := registered(h.t)
	runMu.Lock()
	defer runMu.Unlock()
	h.config = []byte(cfgJSON)
	h.features = 0
	s := &state{host: h, phase: phaseConfig}
	hostabi.SetHost(s)
	defer hostabi.SetHost(nil)
	return p.Configure()
}

// Run sends req through the plugin: OnRequest, then (after Continue) the
// upstream and OnResponse. The plugin is configured with an empty config
// first if Configure was not called.
func (h *Host) Run(req *http.Request) Result {
	h.t.Helper()
	if h.config == nil {
		if err := h.Configure(""); err != nil {
			h.t.Fatalf("sdktest: plugin refused an empty config: %v", err)
		}
	}
	p := registered(h.t)
	s, err := h.newState(req)
	if err != nil {
		h.t.Fatalf("sdktest: reading request: %v", err)
	}
	runMu.Lock()
	defer runMu.Unlock()
	hostabi.SetHost(s)
	defer hostabi.SetHost(nil)

	res := Result{Action: sdk.Stop}
	if p.Request() {
		res.Action = sdk.Continue
		res.UpstreamCalled = true
		s.callUpstream()
		if p.WantsResponse {
			s.phase = phaseResponse
			s.written = [2]bool{}
			p.Response(h.UpstreamError)
		}
	}
	res.Status = s.status
	res.Header = s.respHeader
	res.Body = s.respBody
	res.Request = s.upstreamRequest()
	res.RequestBody = s.reqBody
	res.Values = s.values
	res.Logs = s.logs
	return res
}

func registered(t testing.TB) *hostabi.Plugin {
	p := hostabi.Registered()
	if p == nil {
		t.Fatalf("sdktest: no plugin registered: call sdk.Handle from the plugin's init")
	}
	return p
}

// Logs returns every line the plugin logged on this host.
func (h *Host) Logs() []LogEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LogEntry(nil), h.logs...)
}

// Metric returns what the plugin recorded on the metric name.
func (h *Host) Metric(name string) (Metric, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id, ok := h.metricIDs[name]
	if !ok {
		return Metric{}, false
	}
	m := *h.metrics[id]
	m.Observations = append([]float64(nil), m.Observations...)
	return m, true
}

// Counter returns the current value of a shared counter (0 when missing or
// expired).
func (h *Host) Counter(key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.counters[key]
	if !ok || !h.now.Before(c.expires) {
		return 0
	}
	return c.value
}

// KV returns a shared value and whether it exists.
func (h *Host) KV(key string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.kvLocked(key)
	return e.value, ok
}

// SetKV stores a shared value as another instance or proxy would.
func (h *Host) SetKV(key string, value []byte, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := kvEntry{value: append([]byte(nil), value...)}
	if ttl > 0 {
		e.expires = h.now.Add(ttl)
	}
	h.kv[key] = e
}

func (h *Host) kvLocked(key string) (kvEntry, bool) {
	e, ok := h.kv[key]
	if !ok || (!e.expires.IsZero() && !h.now.Before(e.expires)) {
		return kvEntry{}, false
	}
	return e, true
}

// newState copies req into a fresh per-request state.
func (h *Host) newState(req *http.Request) (*state, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
	}
	h.mu.Lock()
	h.requests++
	n := h.requests
	h.mu.Unlock()

	// Like the proxy, every known property is present, empty when it does
	// not apply (no mTLS peer, no TLS).
	props := map[string]string{
		sdk.PropPeerID:      "",
		sdk.PropPeerSubject: "",
		sdk.PropSNI:         "",
		sdk.PropTraceID:     "",
		sdk.PropListener:    "",
		sdk.PropClientIP:    "",
		sdk.PropClientAddr:  req.RemoteAddr,
		sdk.PropProtocol:    req.Proto,
		sdk.PropTLS:         "false",
		sdk.PropMode:        "edge",
		sdk.PropRoute:       "test",
		sdk.PropRequestID:   "req-" + itoa(n),
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		props[sdk.PropClientIP] = ip
	}
	if req.TLS != nil {
		props[sdk.PropTLS] = "true"
		props[sdk.PropSNI] = req.TLS.ServerName
	}
	for k, v := range h.Properties {
		props[k] = v
	}
	values := make(map[string]string, len(h.Values))
	for k, v := range h.Values {
		values[k] = v
	}
	return &state{
		host:       h,
		phase:      phaseRequest,
		features:   h.features,
		method:     req.Method,
		uri:        req.URL.RequestURI(),
		proto:      req.Proto,
		host0:      req.Host,
		remote:     req.RemoteAddr,
		reqHeader:  req.Header.Clone(),
		reqTrailer: http.Header{},
		reqBody:    body,
		status:     http.StatusOK,
		respHeader: http.Header{},
		respTrail:  http.Header{},
		props:      props,
		values:     values,
	}, nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// callUpstream sends the (mutated) request to the upstream.
func (s *state) callUpstream() {
	h := s.host
	if h.UpstreamError {
		s.status = http.StatusBadGateway
		s.respHeader.Set("Content-Type", "text/plain; charset=utf-8")
		s.respBody = []byte("upstream unavailable\n")
		return
	}
	up := h.Upstream
	if up == nil {
		up = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "upstream\n")
		})
	}
	rec := httptest.NewRecorder()
	up.ServeHTTP(rec, s.upstreamRequest())
	// Headers the plugin set on the response during OnRequest stay unless
	// the upstream sets the same name.
	for k, v := range rec.Header() {
		s.respHeader[k] = v
	}
	s.status = rec.Code
	s.respBody = rec.Body.Bytes()
}

// upstreamRequest builds the request the upstream sees.
func (s *state) upstreamRequest() *http.Request {
	r := httptest.NewRequest(s.method, "http://"+hostOr(s.host0)+s.uri, bytes.NewReader(s.reqBody))
	r.Header = s.reqHeader.Clone()
	r.Trailer = s.reqTrailer.Clone()
	r.RemoteAddr = s.remote
	r.ContentLength = int64(len(s.reqBody))
	return r
}

func hostOr(h string) string {
	if h == "" {
		return "example.com"
	}
	return h
}

func sortedNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
