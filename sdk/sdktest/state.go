package sdktest

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/abi/jws"
	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

type phase int

const (
	phaseConfig phase = iota
	phaseRequest
	phaseResponse
)

// state is the host as one request (or the config check) sees it.
type state struct {
	host  *Host
	phase phase

	features   uint32
	method     string
	uri        string
	proto      string
	host0      string
	remote     string
	reqHeader  http.Header
	reqTrailer http.Header
	reqBody    []byte
	status     int
	respHeader http.Header
	respTrail  http.Header
	respBody   []byte
	written    [2]bool // body kind written in this phase
	props      map[string]string
	values     map[string]string
	logs       []LogEntry
}

var _ hostabi.Host = (*state)(nil)

func (s *state) fail(format string, args ...any) {
	s.host.t.Helper()
	s.host.t.Errorf("sdktest: "+format, args...)
}

func (s *state) inRequest(fn string) bool {
	if s.phase == phaseConfig {
		s.fail("%s called outside a request (in Configure or at init)", fn)
		return false
	}
	return true
}

func (s *state) Log(level int32, msg string) {
	if level < int32(s.host.LogLevel) {
		return
	}
	e := LogEntry{Level: sdkLevel(level), Msg: msg}
	s.logs = append(s.logs, e)
	s.host.mu.Lock()
	s.host.logs = append(s.host.logs, e)
	s.host.mu.Unlock()
	s.host.t.Logf("plugin log [%d]: %s", level, msg)
}

func sdkLevel(l int32) sdk.LogLevel { return sdk.LogLevel(l) }

func (s *state) LogEnabled(level int32) bool { return level >= int32(s.host.LogLevel) }

func (s *state) Config() []byte { return append([]byte(nil), s.host.config...) }

func (s *state) EnableFeatures(f uint32) uint32 {
	const buffering = uint32(abi.FeatureBufferRequest | abi.FeatureBufferResponse)
	switch s.phase {
	case phaseConfig:
		s.host.features |= f
		return s.host.features
	case phaseResponse:
		// The request body is gone once the upstream answered; the
		// response body is buffered on demand.
		f &^= buffering &^ uint32(abi.FeatureBufferResponse)
	}
	s.features |= f
	return s.features
}

func (s *state) Method() string {
	if !s.inRequest("Method") {
		return ""
	}
	return s.method
}

func (s *state) SetMethod(m string) {
	if s.phase == phaseResponse {
		s.fail("SetMethod in OnResponse")
		return
	}
	if s.inRequest("SetMethod") {
		s.method = m
	}
}

func (s *state) URI() string {
	if !s.inRequest("URI") {
		return ""
	}
	return s.uri
}

func (s *state) SetURI(u string) {
	if !s.inRequest("SetURI") {
		return
	}
	if s.phase == phaseResponse {
		s.fail("SetURI in OnResponse")
		return
	}
	if !strings.HasPrefix(u, "/") {
		s.fail("SetURI(%q): the URI must start with /", u)
		return
	}
	s.uri = u
}

func (s *state) ProtocolVersion() string { return s.proto }

func (s *state) SourceAddr() string { return s.remote }

func (s *state) headers(kind uint32) http.Header {
	if !s.inRequest("Header") {
		return http.Header{}
	}
	switch abi.HeaderKind(kind) {
	case abi.HeaderKindRequest:
		return s.reqHeader
	case abi.HeaderKindResponse:
		return s.respHeader
	case abi.HeaderKindRequestTrailers:
		return s.reqTrailer
	case abi.HeaderKindResponseTrailers:
		return s.respTrail
	}
	s.fail("unknown header kind %d", kind)
	return http.Header{}
}

func (s *state) HeaderNames(kind uint32) []string { return sortedNames(s.headers(kind)) }

func (s *state) HeaderValues(kind uint32, name string) []string {
	return append([]string(nil), s.headers(kind).Values(name)...)
}

func (s *state) SetHeader(kind uint32, name, value string) {
	if s.checkHeader(name, value) {
		s.headers(kind).Set(name, value)
	}
}

func (s *state) AddHeader(kind uint32, name, value string) {
	if s.checkHeader(name, value) {
		s.headers(kind).Add(name, value)
	}
}

func (s *state) RemoveHeader(kind uint32, name string) { s.headers(kind).Del(name) }

// checkHeader rejects what the proxy's header validation rejects.
func (s *state) checkHeader(name, value string) bool {
	if name == "" || strings.ContainsAny(name, " \t\r\n:\x00") {
		s.fail("invalid header name %q", name)
		return false
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		s.fail("invalid value %q for header %s", value, name)
		return false
	}
	return true
}

func (s *state) bodyFeature(kind uint32) uint32 {
	if kind == uint32(abi.BodyKindRequest) {
		return uint32(abi.FeatureBufferRequest)
	}
	return uint32(abi.FeatureBufferResponse)
}

func (s *state) ReadBody(kind uint32) []byte {
	if !s.inRequest("Body") {
		return nil
	}
	needFeature := kind == uint32(abi.BodyKindRequest) || s.phase == phaseResponse
	if needFeature && s.features&s.bodyFeature(kind) == 0 {
		s.fail("reading body kind %d without enabling its buffer feature", kind)
		return nil
	}
	if kind == uint32(abi.BodyKindRequest) {
		return append([]byte(nil), s.reqBody...)
	}
	return append([]byte(nil), s.respBody...)
}

func (s *state) WriteBody(kind uint32, body []byte) {
	if !s.inRequest("SetBody") || kind > 1 {
		return
	}
	if kind == uint32(abi.BodyKindRequest) && s.phase == phaseResponse {
		s.fail("writing the request body in OnResponse: it is gone")
		return
	}
	dst := &s.reqBody
	if kind == uint32(abi.BodyKindResponse) {
		dst = &s.respBody
	}
	if !s.written[kind] {
		*dst = nil
		s.written[kind] = true
	}
	*dst = append(*dst, body...)
}

func (s *state) StatusCode() uint32 { return uint32(s.status) }

func (s *state) SetStatusCode(code uint32) {
	if !s.inRequest("SetStatus") {
		return
	}
	if code < 100 || code > 599 {
		s.fail("invalid status %d", code)
		return
	}
	s.status = int(code)
}

func (s *state) Property(name string) (string, bool) {
	if !s.inRequest("Property") {
		return "", false
	}
	v, ok := s.props[name]
	return v, ok
}

func (s *state) Value(key string) (string, bool) {
	if !s.inRequest("Value") {
		return "", false
	}
	v, ok := s.values[key]
	return v, ok
}

func (s *state) SetValue(key, value string) {
	if s.inRequest("SetValue") {
		s.values[key] = value
	}
}

func (s *state) CounterIncr(key string, delta, windowMillis int64) (int64, int64, uint32) {
	if key == "" || windowMillis <= 0 {
		return 0, 0, abi.StatusInvalid
	}
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.counters[key]
	if !ok || !h.now.Before(c.expires) {
		c = &counter{expires: h.now.Add(time.Duration(windowMillis) * time.Millisecond)}
		h.counters[key] = c
	}
	c.value += delta
	return c.value, c.expires.Sub(h.now).Milliseconds(), abi.StatusOK
}

func (s *state) KVGet(key string) ([]byte, uint32) {
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.kvLocked(key)
	if !ok {
		return nil, abi.Missing
	}
	return append([]byte(nil), e.value...), abi.Found
}

func (s *state) KVSet(key string, value []byte, ttlMillis int64) uint32 {
	if key == "" || ttlMillis < 0 {
		return abi.StatusInvalid
	}
	s.host.SetKV(key, value, time.Duration(ttlMillis)*time.Millisecond)
	return abi.StatusOK
}

func (s *state) KVDelete(key string) uint32 {
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.kvLocked(key); !ok {
		return abi.StatusNotFound
	}
	delete(h.kv, key)
	return abi.StatusOK
}

func (s *state) MetricDefine(kind uint32, name, help string) int32 {
	kinds := map[uint32]string{
		uint32(abi.MetricCounter):   "counter",
		uint32(abi.MetricGauge):     "gauge",
		uint32(abi.MetricHistogram): "histogram",
	}
	k, ok := kinds[kind]
	if !ok || !validMetricName(name) {
		s.fail("metric_define(%d, %q): invalid kind or name", kind, name)
		return -1
	}
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.metricIDs[name]; ok {
		if h.metrics[id].Kind != k {
			s.fail("metric %q defined as %s and %s", name, h.metrics[id].Kind, k)
			return -1
		}
		return id
	}
	id := int32(len(h.metrics))
	h.metrics = append(h.metrics, &Metric{Kind: k, Help: help})
	h.metricIDs[name] = id
	return id
}

func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		ok := c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

func (s *state) MetricRecord(id int32, value float64) {
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	if id < 0 || int(id) >= len(h.metrics) {
		s.fail("metric_record: unknown id %d", id)
		return
	}
	m := h.metrics[id]
	switch m.Kind {
	case "counter":
		if value < 0 {
			s.fail("counter add of negative value %v", value)
			return
		}
		m.Value += value
	case "gauge":
		m.Value = value
	case "histogram":
		m.Value += value
		m.Observations = append(m.Observations, value)
	}
}

func (s *state) DeclareStateless() {}

func (s *state) DeclareRequestOnly() {}

func (s *state) VerifySignature(alg string, key, data, sig []byte) uint32 {
	return verifier.Verify(alg, key, data, sig)
}

// verifier is the proxy's own JWS verifier (abi/jws), so sdktest accepts
// exactly the keys and algorithms the proxy does.
var verifier jws.Verifier

func (s *state) ConfigError(msg string) {
	s.fail("%s", fmt.Sprintf("config_error called directly: %s", msg))
}
