//go:build !wasip1

package process

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// server is the plugin side of the Filter service.
type server struct {
	pluginpb.UnimplementedFilterServer
	p      *hostabi.Plugin
	broker *plugin.GRPCBroker

	// mu serializes handler runs: the SDK's host is process-wide.
	mu         sync.Mutex
	host       pluginpb.HostClient
	config     []byte
	logLevel   int32
	features   uint32
	configured bool
	// cur is the SDK's host, installed once so metric ids stay valid;
	// each handler run resets it to that run's exchange.
	cur       call
	installed bool
}

func newServer(p *hostabi.Plugin, b *plugin.GRPCBroker) *server {
	return &server{p: p, broker: b}
}

// Configure dials the proxy's Host service and runs the plugin's config check.
func (s *server) Configure(ctx context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host == nil {
		cc, err := s.broker.Dial(req.HostBrokerId)
		if err != nil {
			return nil, fmt.Errorf("sdk/process: dial host: %w", err)
		}
		s.host = pluginpb.NewHostClient(cc)
	}
	s.config = append([]byte(nil), req.Config...)
	s.logLevel = req.LogLevel
	s.features = 0
	s.cur = call{s: s, ctx: ctx, phase: phaseConfig}
	c := s.install()
	err := s.p.Configure()
	s.features = c.features
	if err == nil && c.configErr != "" {
		err = errors.New(c.configErr)
	}
	s.configured = err == nil
	out := &pluginpb.ConfigureResponse{WantsResponse: s.p.WantsResponse, Features: s.features}
	if err != nil {
		out.Error = err.Error()
	}
	return out, nil
}

// HandleRequest runs OnRequest on a copy of the request.
func (s *server) HandleRequest(ctx context.Context, x *pluginpb.Exchange) (*pluginpb.Result, error) {
	return s.run(ctx, x, phaseRequest)
}

// HandleResponse runs OnResponse on a copy of the response.
func (s *server) HandleResponse(ctx context.Context, x *pluginpb.Exchange) (*pluginpb.Result, error) {
	return s.run(ctx, x, phaseResponse)
}

// Calls serves phase calls on a stream until the proxy closes it.
func (s *server) Calls(stream pluginpb.Filter_CallsServer) error {
	ctx := stream.Context()
	for {
		c, err := stream.Recv()
		if err != nil {
			return nil // the proxy closed or cancelled the stream
		}
		ph := phaseRequest
		if c.Response {
			ph = phaseResponse
		}
		x := c.Exchange
		if x == nil {
			x = &pluginpb.Exchange{}
		}
		res, err := s.run(ctx, x, ph)
		if err != nil {
			res = &pluginpb.Result{Error: err.Error()}
		}
		if err := stream.Send(res); err != nil {
			return nil
		}
	}
}

// install makes s.cur the SDK's host (once) and returns it.
func (s *server) install() *call {
	if !s.installed {
		hostabi.SetHost(&s.cur)
		s.installed = true
	}
	return &s.cur
}

func (s *server) run(ctx context.Context, x *pluginpb.Exchange, ph phase) (*pluginpb.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return nil, errors.New("sdk/process: plugin not configured")
	}
	s.cur = newCall(s, ctx, x, ph)
	c := s.install()
	res := &pluginpb.Result{}
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.violate("panic: %v", r)
			}
		}()
		if ph == phaseRequest {
			res.Next = s.p.Request()
		} else {
			s.p.Response(x.IsError)
		}
	}()
	if c.violation != "" {
		return &pluginpb.Result{Violation: c.violation}, nil
	}
	c.fill(res)
	return res, nil
}

type phase int

const (
	phaseConfig phase = iota
	phaseRequest
	phaseResponse
)

// call is the SDK's host during one handler run: a local copy of the
// exchange that records what the handler changed.
type call struct {
	s     *server
	ctx   context.Context
	id    uint64
	phase phase

	method, uri, proto, src, host string
	reqH, respH                   http.Header
	status                        int32
	props, values                 map[string]string
	changed                       map[string]string
	features                      uint32
	isError                       bool

	methodSet, uriSet, hostSet, reqHSet, respHSet bool
	reqBody, respBody                             []byte
	reqBodySet, respBodySet                       bool
	bodies                                        [2][]byte
	bodyRead                                      [2]bool

	metrics   []*pluginpb.MetricRecordRequest
	configErr string
	violation string
}

var _ hostabi.Host = (*call)(nil)

func newCall(s *server, ctx context.Context, x *pluginpb.Exchange, ph phase) call {
	return call{
		s: s, ctx: ctx, id: x.CallId, phase: ph,
		method: x.Method, uri: x.Uri, proto: x.Protocol, src: x.SourceAddr, host: x.Host,
		reqH: toHeader(x.RequestHeaders), respH: toHeader(x.ResponseHeaders),
		status: x.Status, props: x.Properties, values: x.Values,
		features: x.Features, isError: x.IsError,
	}
}

func toHeader(hs []*pluginpb.Header) http.Header {
	h := make(http.Header, len(hs))
	for _, e := range hs {
		h[e.Name] = e.Values
	}
	return h
}

// FromHeader turns an http.Header into wire headers, sorted by name.
func fromHeader(h http.Header) []*pluginpb.Header {
	out := make([]*pluginpb.Header, 0, len(h))
	for k, vs := range h {
		out = append(out, &pluginpb.Header{Name: k, Values: vs})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// fill writes the changes into res.
func (c *call) fill(res *pluginpb.Result) {
	res.MethodSet, res.Method = c.methodSet, c.method
	res.UriSet, res.Uri = c.uriSet, c.uri
	res.HostSet, res.Host = c.hostSet, c.host
	if c.reqHSet {
		res.RequestHeadersSet, res.RequestHeaders = true, fromHeader(c.reqH)
	}
	if c.respHSet {
		res.ResponseHeadersSet, res.ResponseHeaders = true, fromHeader(c.respH)
	}
	res.Status = c.status
	res.RequestBodySet, res.RequestBody = c.reqBodySet, c.reqBody
	res.ResponseBodySet, res.ResponseBody = c.respBodySet, c.respBody
	res.Values = c.changed
	res.Metrics = c.metrics
}

func (c *call) violate(format string, args ...any) {
	if c.violation == "" {
		c.violation = fmt.Sprintf(format, args...)
	}
}

// Log sends msg to the proxy's log.
func (c *call) Log(level int32, msg string) {
	if !c.LogEnabled(level) || c.s.host == nil {
		return
	}
	_, _ = c.s.host.Log(c.ctx, &pluginpb.LogRequest{Level: level, Msg: msg})
}

// LogEnabled compares level with the proxy's level.
func (c *call) LogEnabled(level int32) bool { return level >= c.s.logLevel }

// Config returns the plugin's config.
func (c *call) Config() []byte { return c.s.config }

// EnableFeatures adds features for this call (or, in Configure, for all).
func (c *call) EnableFeatures(f uint32) uint32 {
	c.features |= f
	return c.features
}

// Method returns the request method.
func (c *call) Method() string { return c.method }

// SetMethod replaces the request method.
func (c *call) SetMethod(m string) {
	if c.phase != phaseRequest {
		c.violate("set_method outside handle_request")
		return
	}
	if m == "" || !validToken(m) {
		c.violate("set_method: invalid method %q", m)
		return
	}
	c.method, c.methodSet = m, true
}

// URI returns the request target.
func (c *call) URI() string { return c.uri }

// SetURI replaces the request target.
func (c *call) SetURI(u string) {
	if c.phase != phaseRequest {
		c.violate("set_uri outside handle_request")
		return
	}
	if u == "" {
		u = "/"
	}
	nu, err := url.ParseRequestURI(u)
	if err != nil || nu.Host != "" || nu.Scheme != "" || !strings.HasPrefix(u, "/") {
		c.violate("set_uri: invalid origin-form URI %q", u)
		return
	}
	c.uri, c.uriSet = u, true
}

// ProtocolVersion returns the request protocol.
func (c *call) ProtocolVersion() string { return c.proto }

// SourceAddr returns the client's address.
func (c *call) SourceAddr() string { return c.src }

// header returns a header block; trailers are not carried to process
// plugins and read as empty.
func (c *call) header(kind uint32) http.Header {
	switch abi.HeaderKind(kind) {
	case abi.HeaderKindRequest:
		return c.reqH
	case abi.HeaderKindResponse:
		return c.respH
	}
	return nil
}

func (c *call) touched(kind uint32) bool {
	switch abi.HeaderKind(kind) {
	case abi.HeaderKindRequest:
		if c.phase != phaseRequest {
			c.violate("request headers are read-only in handle_response")
			return false
		}
		c.reqHSet = true
	case abi.HeaderKindResponse:
		c.respHSet = true
	default:
		c.violate("header kind %d is not available to process plugins", kind)
		return false
	}
	return true
}

func isHost(name string) bool { return strings.EqualFold(name, "host") }

// HeaderNames lists the names of a header block.
func (c *call) HeaderNames(kind uint32) []string {
	h := c.header(kind)
	out := make([]string, 0, len(h)+1)
	if abi.HeaderKind(kind) == abi.HeaderKindRequest && c.host != "" {
		out = append(out, "Host")
	}
	for k := range h {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// HeaderValues lists the values of name.
func (c *call) HeaderValues(kind uint32, name string) []string {
	if abi.HeaderKind(kind) == abi.HeaderKindRequest && isHost(name) {
		if c.host == "" {
			return nil
		}
		return []string{c.host}
	}
	h := c.header(kind)
	if vs, ok := h[name]; ok {
		return vs
	}
	return h[textproto.CanonicalMIMEHeaderKey(name)]
}

func (c *call) checkHeader(name, value string) bool {
	if name == "" || !validToken(name) {
		c.violate("invalid header name %q", name)
		return false
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		c.violate("invalid value for header %q", name)
		return false
	}
	return true
}

// SetHeader replaces all values of name.
func (c *call) SetHeader(kind uint32, name, value string) {
	if !c.checkHeader(name, value) || !c.touched(kind) {
		return
	}
	if abi.HeaderKind(kind) == abi.HeaderKindRequest && isHost(name) {
		c.host, c.hostSet = value, true
		return
	}
	c.header(kind)[textproto.CanonicalMIMEHeaderKey(name)] = []string{value}
}

// AddHeader appends a value to name.
func (c *call) AddHeader(kind uint32, name, value string) {
	if !c.checkHeader(name, value) || !c.touched(kind) {
		return
	}
	if abi.HeaderKind(kind) == abi.HeaderKindRequest && isHost(name) {
		c.host, c.hostSet = value, true
		return
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	h := c.header(kind)
	h[k] = append(h[k], value)
}

// RemoveHeader deletes name.
func (c *call) RemoveHeader(kind uint32, name string) {
	if !c.touched(kind) {
		return
	}
	h := c.header(kind)
	if _, ok := h[name]; ok {
		delete(h, name)
		return
	}
	delete(h, textproto.CanonicalMIMEHeaderKey(name))
}

// ReadBody asks the proxy for the whole body of kind (once per call).
func (c *call) ReadBody(kind uint32) []byte {
	k := abi.BodyKind(kind)
	if k != abi.BodyKindRequest && k != abi.BodyKindResponse {
		c.violate("unknown body kind %d", kind)
		return nil
	}
	if !c.bodyRead[k] {
		res, err := c.s.host.ReadBody(c.ctx, &pluginpb.BodyRequest{CallId: c.id, Kind: kind})
		switch {
		case err != nil:
			c.violate("read_body: %v", err)
			return nil
		case res.Error != "":
			c.violate("read_body: %s", res.Error)
			return nil
		}
		c.bodies[k], c.bodyRead[k] = res.Body, true
	}
	return c.bodies[k]
}

// WriteBody replaces the body on the first write of a phase and appends later.
func (c *call) WriteBody(kind uint32, body []byte) {
	switch {
	case abi.BodyKind(kind) == abi.BodyKindRequest && c.phase == phaseRequest:
		if !c.reqBodySet {
			c.reqBody, c.reqBodySet = nil, true
		}
		c.reqBody = append(c.reqBody, body...)
	case abi.BodyKind(kind) == abi.BodyKindResponse:
		if !c.respBodySet {
			c.respBody, c.respBodySet = nil, true
		}
		c.respBody = append(c.respBody, body...)
	case abi.BodyKind(kind) == abi.BodyKindRequest:
		c.violate("write_body: the request body is gone in handle_response")
	default:
		c.violate("unknown body kind %d", kind)
	}
}

// StatusCode returns the response status.
func (c *call) StatusCode() uint32 {
	if c.status == 0 {
		return http.StatusOK
	}
	return uint32(c.status)
}

// SetStatusCode sets the response status.
func (c *call) SetStatusCode(code uint32) {
	if code < 100 || code > 599 {
		c.violate("set_status_code: invalid status %d", code)
		return
	}
	c.status = int32(code)
}

// propertyAliases maps the alternative property names the proxy accepts.
var propertyAliases = map[string]string{
	"remote_addr":      abi.PropertyClientAddr,
	"peer_spiffe_id":   abi.PropertyPeerID,
	"source.principal": abi.PropertyPeerID,
	"route_name":       abi.PropertyRoute,
}

// Property returns a request property.
func (c *call) Property(name string) (string, bool) {
	if a, ok := propertyAliases[name]; ok {
		name = a
	}
	v, ok := c.props[name]
	return v, ok
}

// Value returns a per-request value.
func (c *call) Value(key string) (string, bool) {
	if v, ok := c.changed[key]; ok {
		return v, true
	}
	v, ok := c.values[key]
	return v, ok
}

// SetValue records a per-request value for the proxy.
func (c *call) SetValue(key, value string) {
	if c.changed == nil {
		c.changed = make(map[string]string, 2)
	}
	c.changed[key] = value
}

// CounterIncr calls the proxy's shared store.
func (c *call) CounterIncr(key string, delta, windowMillis int64) (int64, int64, uint32) {
	res, err := c.s.host.CounterIncr(c.ctx, &pluginpb.CounterRequest{Key: key, Delta: delta, WindowMillis: windowMillis})
	if err != nil {
		return 0, 0, abi.StatusError
	}
	return res.Value, res.TtlMillis, res.Status
}

// KVGet calls the proxy's shared store.
func (c *call) KVGet(key string) ([]byte, uint32) {
	res, err := c.s.host.KVGet(c.ctx, &pluginpb.KVRequest{Key: key})
	if err != nil {
		return nil, abi.StoreError
	}
	return res.Value, res.Found
}

// KVSet calls the proxy's shared store.
func (c *call) KVSet(key string, value []byte, ttlMillis int64) uint32 {
	res, err := c.s.host.KVSet(c.ctx, &pluginpb.KVRequest{Key: key, Value: value, TtlMillis: ttlMillis})
	if err != nil {
		return abi.StatusError
	}
	return res.Status
}

// KVDelete calls the proxy's shared store.
func (c *call) KVDelete(key string) uint32 {
	res, err := c.s.host.KVDelete(c.ctx, &pluginpb.KVRequest{Key: key})
	if err != nil {
		return abi.StatusError
	}
	return res.Status
}

// MetricDefine defines a metric in the proxy.
func (c *call) MetricDefine(kind uint32, name, help string) int32 {
	res, err := c.s.host.MetricDefine(c.ctx, &pluginpb.MetricDefineRequest{Kind: kind, Name: name, Help: help})
	if err != nil {
		return -1
	}
	return res.Id
}

// MetricRecord records a metric value; handler runs send them with their
// result, Configure sends them at once.
func (c *call) MetricRecord(id int32, value float64) {
	r := &pluginpb.MetricRecordRequest{Id: id, Value: value}
	if c.phase == phaseConfig {
		_, _ = c.s.host.MetricRecord(c.ctx, r)
		return
	}
	c.metrics = append(c.metrics, r)
}

// DeclareStateless is implied for process plugins.
func (c *call) DeclareStateless() {}

// DeclareRequestOnly is carried by ConfigureResponse.WantsResponse.
func (c *call) DeclareRequestOnly() {}

// VerifySignature is not available to process plugins (they may verify
// with crypto/* themselves): it reports StatusError.
func (c *call) VerifySignature(string, []byte, []byte, []byte) uint32 { return abi.StatusError }

// ConfigError refuses the config.
func (c *call) ConfigError(msg string) { c.configErr = msg }

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", b) >= 0 {
			return false
		}
	}
	return true
}
