package wasm

import (
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"

	"github.com/wasmgate/wasmgate/abi"
)

// Limits on what a guest may write into the host per call.
const (
	// maxHeaderWrite bounds the header bytes (names and values) one guest
	// call may set or add.
	maxHeaderWrite = 1 << 20
	// maxURI bounds set_uri and set_method input.
	maxURI = 64 << 10
)

const supportedFeatures = abi.FeatureBufferRequest | abi.FeatureBufferResponse | abi.FeatureTrailers

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
	f64 = api.ValueTypeF64
)

// hostFunc is one host function: its wasm signature and its Go body.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	// reqOnly functions need a request: called during init they are a
	// violation.
	reqOnly bool
	fn      func(i *instance, stack []uint64)
}

func httpHandlerFuncs() []hostFunc {
	return []hostFunc{
		{name: abi.FuncLog, params: []api.ValueType{i32, i32, i32}, fn: hLog},
		{name: abi.FuncLogEnabled, params: []api.ValueType{i32}, results: []api.ValueType{i32}, fn: hLogEnabled},
		{name: abi.FuncGetConfig, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, fn: hGetConfig},
		{name: abi.FuncEnableFeatures, params: []api.ValueType{i32}, results: []api.ValueType{i32}, fn: hEnableFeatures},
		{name: abi.FuncGetMethod, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, reqOnly: true, fn: hGetMethod},
		{name: abi.FuncSetMethod, params: []api.ValueType{i32, i32}, reqOnly: true, fn: hSetMethod},
		{name: abi.FuncGetURI, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, reqOnly: true, fn: hGetURI},
		{name: abi.FuncSetURI, params: []api.ValueType{i32, i32}, reqOnly: true, fn: hSetURI},
		{name: abi.FuncGetProtocolVersion, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, reqOnly: true, fn: hGetProtocolVersion},
		{name: abi.FuncGetHeaderNames, params: []api.ValueType{i32, i32, i32}, results: []api.ValueType{i64}, reqOnly: true, fn: hGetHeaderNames},
		{name: abi.FuncGetHeaderValues, params: []api.ValueType{i32, i32, i32, i32, i32}, results: []api.ValueType{i64}, reqOnly: true, fn: hGetHeaderValues},
		{name: abi.FuncSetHeaderValue, params: []api.ValueType{i32, i32, i32, i32, i32}, reqOnly: true, fn: hSetHeaderValue},
		{name: abi.FuncAddHeaderValue, params: []api.ValueType{i32, i32, i32, i32, i32}, reqOnly: true, fn: hAddHeaderValue},
		{name: abi.FuncRemoveHeader, params: []api.ValueType{i32, i32, i32}, reqOnly: true, fn: hRemoveHeader},
		{name: abi.FuncReadBody, params: []api.ValueType{i32, i32, i32}, results: []api.ValueType{i64}, reqOnly: true, fn: hReadBody},
		{name: abi.FuncWriteBody, params: []api.ValueType{i32, i32, i32}, reqOnly: true, fn: hWriteBody},
		{name: abi.FuncGetStatusCode, results: []api.ValueType{i32}, reqOnly: true, fn: hGetStatusCode},
		{name: abi.FuncSetStatusCode, params: []api.ValueType{i32}, reqOnly: true, fn: hSetStatusCode},
		{name: abi.FuncGetSourceAddr, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, reqOnly: true, fn: hGetSourceAddr},
	}
}

func zapLevel(l abi.LogLevel) (zapcore.Level, bool) {
	switch {
	case l <= abi.LogLevelDebug:
		return zapcore.DebugLevel, true
	case l == abi.LogLevelInfo:
		return zapcore.InfoLevel, true
	case l == abi.LogLevelWarn:
		return zapcore.WarnLevel, true
	case l == abi.LogLevelError:
		return zapcore.ErrorLevel, true
	}
	return 0, false
}

func hLog(i *instance, s []uint64) {
	lvl, ok := zapLevel(abi.LogLevel(int32(s[0])))
	msg, okm := i.mem.Read(uint32(s[1]), uint32(s[2]))
	if !ok || !okm {
		return // the spec: a host that fails to log ignores the message
	}
	if ce := i.p.log.Check(lvl, "guest log"); ce != nil {
		ce.Write(zap.ByteString("msg", msg), zap.String("request_id", i.requestID()))
	}
}

func hLogEnabled(i *instance, s []uint64) {
	lvl, ok := zapLevel(abi.LogLevel(int32(s[0])))
	s[0] = 0
	if ok && i.p.log.Core().Enabled(lvl) {
		s[0] = 1
	}
}

func hGetConfig(i *instance, s []uint64) {
	s[0] = uint64(i.writeBytes(uint32(s[0]), uint32(s[1]), i.p.config, "get_config"))
}

func hEnableFeatures(i *instance, s []uint64) {
	f := abi.Features(uint32(s[0])) & supportedFeatures
	var enabled abi.Features
	if i.phase == phaseInit {
		i.features |= f
		enabled = i.features
	} else {
		i.st.features |= f
		enabled = i.st.features
	}
	s[0] = uint64(enabled)
}

func hGetMethod(i *instance, s []uint64) {
	s[0] = uint64(i.writeString(uint32(s[0]), uint32(s[1]), i.x.Request.Method, "get_method"))
}

func hSetMethod(i *instance, s []uint64) {
	if i.phase != phaseRequest {
		i.violate("set_method outside handle_request")
		return
	}
	b, ok := i.read(uint32(s[0]), uint32(s[1]), "set_method")
	if !ok {
		return
	}
	if len(b) == 0 || len(b) > maxURI || !validToken(b) {
		i.violate("set_method: invalid method %q", clip(b))
		return
	}
	i.x.Request.Method = string(b)
}

func hGetURI(i *instance, s []uint64) {
	u := i.x.Request.URL
	uri := "/"
	if u != nil {
		if uri = u.RequestURI(); uri == "" {
			uri = "/"
		}
	}
	s[0] = uint64(i.writeString(uint32(s[0]), uint32(s[1]), uri, "get_uri"))
}

func hSetURI(i *instance, s []uint64) {
	if i.phase != phaseRequest {
		i.violate("set_uri outside handle_request")
		return
	}
	b, ok := i.read(uint32(s[0]), uint32(s[1]), "set_uri")
	if !ok {
		return
	}
	if len(b) > maxURI {
		i.violate("set_uri: %d bytes is over the %d byte limit", len(b), maxURI)
		return
	}
	raw := string(b)
	if raw == "" {
		raw = "/"
	}
	nu, err := url.ParseRequestURI(raw)
	if err != nil || nu.Host != "" || nu.Scheme != "" || !strings.HasPrefix(raw, "/") {
		i.violate("set_uri: invalid origin-form URI %q", clip(b))
		return
	}
	r := i.x.Request
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = nu.Path, nu.RawPath, nu.RawQuery
	r.URL.ForceQuery = nu.ForceQuery
	r.RequestURI = raw
}

func hGetProtocolVersion(i *instance, s []uint64) {
	p := i.x.Props.Protocol
	if p == "" {
		p = i.x.Request.Proto
	}
	if p == "" {
		p = "HTTP/1.1"
	}
	s[0] = uint64(i.writeString(uint32(s[0]), uint32(s[1]), p, "get_protocol_version"))
}

func hGetSourceAddr(i *instance, s []uint64) {
	a := i.x.Props.ClientAddr
	if a == "" {
		a = i.x.Request.RemoteAddr
	}
	s[0] = uint64(i.writeString(uint32(s[0]), uint32(s[1]), a, "get_source_addr"))
}

// headers returns the header block of kind; create makes a missing trailer
// map. ok is false for an unknown kind (a violation).
func (i *instance) headers(kind uint32, create bool) (h http.Header, ok bool) {
	x := i.x
	switch abi.HeaderKind(kind) {
	case abi.HeaderKindRequest:
		return x.Request.Header, true
	case abi.HeaderKindResponse:
		return x.Response.Header, true
	case abi.HeaderKindRequestTrailers:
		if x.Request.Trailer == nil && create {
			x.Request.Trailer = make(http.Header)
		}
		return x.Request.Trailer, true
	case abi.HeaderKindResponseTrailers:
		if x.Response.Trailer == nil && create {
			x.Response.Trailer = make(http.Header)
		}
		return x.Response.Trailer, true
	}
	i.violate("unknown header kind %d", kind)
	return nil, false
}

func hGetHeaderNames(i *instance, s []uint64) {
	kind, buf, limit := uint32(s[0]), uint32(s[1]), uint32(s[2])
	s[0] = 0
	h, ok := i.headers(kind, false)
	if !ok {
		return
	}
	host := ""
	if abi.HeaderKind(kind) == abi.HeaderKindRequest {
		host = i.x.Request.Host
	}
	count, size := 0, 0
	for k := range h {
		count++
		size += len(k) + 1
	}
	if host != "" && h["Host"] == nil {
		count++
		size += len("host") + 1
	}
	s[0] = uint64(count)<<32 | uint64(size)
	if size == 0 || uint32(size) > limit {
		return
	}
	out, ok := i.read(buf, uint32(size), "get_header_names")
	if !ok {
		s[0] = 0
		return
	}
	names := make([]string, 0, count)
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names) // stable output for guests and tests
	off := 0
	for _, k := range names {
		off += lowerCopy(out[off:], k)
		out[off] = 0
		off++
	}
	if host != "" && h["Host"] == nil {
		off += copy(out[off:], "host")
		out[off] = 0
	}
}

// lowerCopy copies s into dst in ASCII lower case.
func lowerCopy(dst []byte, s string) int {
	for j := 0; j < len(s); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[j] = c
	}
	return len(s)
}

// headerKey returns the canonical form of a header name. Names are
// interned per plugin, so a guest setting the same headers on every request
// does not allocate a key each time.
func (i *instance) headerKey(name []byte) string {
	return i.p.names.canonical(name)
}

// nameCache interns canonical header names.
type nameCache struct {
	mu sync.RWMutex
	m  map[string]string
}

const maxCachedNames = 1024

func (c *nameCache) canonical(name []byte) string {
	c.mu.RLock()
	k, ok := c.m[string(name)]
	c.mu.RUnlock()
	if ok {
		return k
	}
	raw := string(name)
	k = textproto.CanonicalMIMEHeaderKey(raw)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedNames {
		c.m = make(map[string]string)
	}
	c.m[raw] = k
	c.mu.Unlock()
	return k
}

// validValue reports whether b is a valid header field value (no CR, LF,
// NUL or other control bytes except tab).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (i *instance) headerValues(kind uint32, name []byte) ([]string, bool) {
	h, ok := i.headers(kind, false)
	if !ok {
		return nil, false
	}
	if abi.HeaderKind(kind) == abi.HeaderKindRequest && isHost(name) {
		if i.x.Request.Host == "" {
			return nil, true
		}
		return []string{i.x.Request.Host}, true
	}
	if vs, ok := h[string(name)]; ok {
		return vs, true
	}
	return h[i.headerKey(name)], true
}

func isHost(name []byte) bool {
	return len(name) == 4 && strings.EqualFold(string(name), "host")
}

func hGetHeaderValues(i *instance, s []uint64) {
	kind := uint32(s[0])
	name, ok := i.read(uint32(s[1]), uint32(s[2]), "get_header_values name")
	buf, limit := uint32(s[3]), uint32(s[4])
	s[0] = 0
	if !ok {
		return
	}
	vs, ok := i.headerValues(kind, name)
	if !ok || len(vs) == 0 {
		return
	}
	size := 0
	for _, v := range vs {
		size += len(v) + 1
	}
	s[0] = uint64(len(vs))<<32 | uint64(size)
	if uint32(size) > limit {
		return
	}
	out, ok := i.read(buf, uint32(size), "get_header_values buffer")
	if !ok {
		s[0] = 0
		return
	}
	off := 0
	for _, v := range vs {
		off += copy(out[off:], v)
		out[off] = 0
		off++
	}
}

// headerOp names a header function in violation messages (no string
// building on the hot path).
type headerOp struct{ fn, name, value string }

var (
	opSet    = headerOp{"set_header_value", "set_header_value name", "set_header_value value"}
	opAdd    = headerOp{"add_header_value", "add_header_value name", "add_header_value value"}
	opRemove = headerOp{"remove_header", "remove_header name", ""}
)

// headerArgs reads and checks (kind, name, name_len, value, value_len).
func (i *instance) headerArgs(s []uint64, what headerOp, withValue bool) (h http.Header, kind abi.HeaderKind, name, value []byte, ok bool) {
	if i.violation != nil {
		return nil, 0, nil, nil, false
	}
	kind = abi.HeaderKind(uint32(s[0]))
	if h, ok = i.headers(uint32(kind), true); !ok {
		return nil, 0, nil, nil, false
	}
	if name, ok = i.read(uint32(s[1]), uint32(s[2]), what.name); !ok {
		return nil, 0, nil, nil, false
	}
	if withValue {
		if value, ok = i.read(uint32(s[3]), uint32(s[4]), what.value); !ok {
			return nil, 0, nil, nil, false
		}
	}
	i.hdrBytes += len(name) + len(value)
	switch {
	case i.hdrBytes > maxHeaderWrite:
		i.violate("%s: more than %d header bytes written in one call", what.fn, maxHeaderWrite)
		return nil, 0, nil, nil, false
	case len(name) == 0 || !validToken(name):
		i.violate("%s: invalid header name %q", what.fn, clip(name))
		return nil, 0, nil, nil, false
	case withValue && !validValue(value):
		i.violate("%s: invalid value for header %q", what.fn, clip(name))
		return nil, 0, nil, nil, false
	}
	return h, kind, name, value, true
}

func hSetHeaderValue(i *instance, s []uint64) {
	h, kind, name, value, ok := i.headerArgs(s, opSet, true)
	if !ok {
		return
	}
	if kind == abi.HeaderKindRequest && isHost(name) {
		i.x.Request.Host = string(value)
		return
	}
	h[i.headerKey(name)] = []string{string(value)}
}

func hAddHeaderValue(i *instance, s []uint64) {
	h, kind, name, value, ok := i.headerArgs(s, opAdd, true)
	if !ok {
		return
	}
	if kind == abi.HeaderKindRequest && isHost(name) {
		i.x.Request.Host = string(value)
		return
	}
	k := i.headerKey(name)
	h[k] = append(h[k], string(value))
}

func hRemoveHeader(i *instance, s []uint64) {
	h, _, name, _, ok := i.headerArgs(s, opRemove, false)
	if !ok {
		return
	}
	if vs, found := h[string(name)]; found && vs != nil {
		delete(h, string(name))
		return
	}
	delete(h, i.headerKey(name))
}

// body returns the full current body of kind, buffering it when needed.
func (i *instance) body(kind abi.BodyKind) ([]byte, bool) {
	x := i.x
	switch kind {
	case abi.BodyKindRequest:
		b, err := x.RequestBody()
		if err != nil {
			i.violate("read_body: request: %v", err)
			return nil, false
		}
		return b, true
	case abi.BodyKindResponse:
		if i.phase == phaseRequest {
			b, _ := x.Response.Buffered()
			return b, true
		}
		b, err := x.Response.BufferBody(bodyCap(x.BodyCap))
		if err != nil {
			i.violate("read_body: response: %v", err)
			return nil, false
		}
		return b, true
	}
	i.violate("unknown body kind %d", kind)
	return nil, false
}

func hReadBody(i *instance, s []uint64) {
	kind, buf, limit := abi.BodyKind(uint32(s[0])), uint32(s[1]), uint32(s[2])
	s[0] = 0
	if i.violation != nil {
		return
	}
	if limit == 0 {
		i.violate("read_body: buf_limit is zero")
		return
	}
	b, ok := i.body(kind)
	if !ok {
		return
	}
	off := &i.st.reqRead
	if kind == abi.BodyKindResponse {
		off = &i.st.respRead
	}
	if *off > len(b) {
		*off = len(b)
	}
	rest := b[*off:]
	n := min(uint32(len(rest)), limit)
	if n > 0 && !i.mem.Write(buf, rest[:n]) {
		i.violate("read_body: buffer [%d, +%d) is outside guest memory (%d bytes)", buf, n, i.mem.Size())
		return
	}
	*off += int(n)
	var eof uint64
	if *off >= len(b) {
		eof = 1
	}
	s[0] = eof<<32 | uint64(n)
}

func hWriteBody(i *instance, s []uint64) {
	kind := abi.BodyKind(uint32(s[0]))
	if i.violation != nil {
		return
	}
	b, ok := i.read(uint32(s[1]), uint32(s[2]), "write_body")
	if !ok {
		return
	}
	st := i.st
	var out *[]byte
	switch {
	case kind == abi.BodyKindRequest && i.phase == phaseRequest:
		if !st.reqWritten {
			st.reqOut, st.reqWritten = nil, true
		}
		out = &st.reqOut
	case kind == abi.BodyKindResponse:
		if !st.respWritten {
			st.respOut, st.respWritten = nil, true
		}
		out = &st.respOut
	case kind == abi.BodyKindRequest:
		i.violate("write_body: the request body is gone in handle_response")
		return
	default:
		i.violate("unknown body kind %d", kind)
		return
	}
	if int64(len(*out)+len(b)) > bodyCap(i.x.BodyCap) {
		i.violate("write_body: body over the %d byte cap", bodyCap(i.x.BodyCap))
		return
	}
	*out = append(*out, b...)
}

func hGetStatusCode(i *instance, s []uint64) {
	code := i.x.Response.StatusCode
	if code == 0 {
		code = http.StatusOK
	}
	s[0] = uint64(uint32(code))
}

func hSetStatusCode(i *instance, s []uint64) {
	code := uint32(s[0])
	if code < 100 || code > 599 {
		i.violate("set_status_code: invalid status %d", code)
		return
	}
	i.x.Response.StatusCode = int(code)
}

func bodyCap(c int64) int64 {
	if c <= 0 {
		return 4 << 20
	}
	return c
}

// validToken reports whether b is an HTTP token (method, header name).
func validToken(b []byte) bool {
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// clip shortens guest input for error messages.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// requestID returns the id of the request being handled, if any.
func (i *instance) requestID() string {
	if i.x == nil {
		return ""
	}
	return i.x.Props.RequestID
}
