package sdk

import (
	"encoding/binary"
	"math"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// rawHost is a byte-level host that follows the ABI's encodings (buffer
// convention, NUL-separated lists, hi<<32|len results), so the tests below
// check abiHost's decoding without a Wasm runtime.
type rawHost struct {
	t           *testing.T
	calls       map[string]int
	logs        []string
	config      string
	features    uint32
	method      string
	uri         string
	headers     [4]http.Header
	body        [2][]byte
	bodyRead    [2]int
	status      uint32
	props       map[string]string
	values      map[string]string
	kv          map[string][]byte
	metrics     []float64
	names       []string
	lastSig     []string
	cfgErr      string
	stateless   bool
	requestOnly bool
}

func newRawHost(t *testing.T) *rawHost {
	return &rawHost{
		t:       t,
		calls:   map[string]int{},
		headers: [4]http.Header{{}, {}, {}, {}},
		props:   map[string]string{},
		values:  map[string]string{},
		kv:      map[string][]byte{},
		status:  200,
	}
}

func mem(p unsafe.Pointer, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}

func str(p unsafe.Pointer, n uint32) string { return string(mem(p, n)) }

// put applies the buffer convention: write only when v fits.
func put(buf unsafe.Pointer, limit uint32, v []byte) uint32 {
	if uint32(len(v)) <= limit {
		copy(mem(buf, limit), v)
	}
	return uint32(len(v))
}

func (r *rawHost) list(vs []string) []byte {
	var b []byte
	for _, v := range vs {
		b = append(append(b, v...), 0)
	}
	return b
}

func (r *rawHost) log(l int32, p unsafe.Pointer, n uint32) {
	r.logs = append(r.logs, str(p, n))
}
func (r *rawHost) logEnabled(l int32) uint32 {
	if l >= int32(abi.LogLevelInfo) {
		return 1
	}
	return 0
}
func (r *rawHost) getConfig(b unsafe.Pointer, l uint32) uint32 {
	r.calls["get_config"]++
	return put(b, l, []byte(r.config))
}
func (r *rawHost) enableFeatures(f uint32) uint32 { r.features |= f; return r.features }
func (r *rawHost) getMethod(b unsafe.Pointer, l uint32) uint32 {
	return put(b, l, []byte(r.method))
}
func (r *rawHost) setMethod(p unsafe.Pointer, n uint32) { r.method = str(p, n) }
func (r *rawHost) getURI(b unsafe.Pointer, l uint32) uint32 {
	r.calls["get_uri"]++
	return put(b, l, []byte(r.uri))
}
func (r *rawHost) setURI(p unsafe.Pointer, n uint32) { r.uri = str(p, n) }
func (r *rawHost) getProtocolVersion(b unsafe.Pointer, l uint32) uint32 {
	return put(b, l, []byte("HTTP/2.0"))
}
func (r *rawHost) getSourceAddr(b unsafe.Pointer, l uint32) uint32 {
	return put(b, l, []byte("192.0.2.7:5555"))
}
func (r *rawHost) getHeaderNames(k uint32, b unsafe.Pointer, l uint32) uint64 {
	var names []string
	for n := range r.headers[k] {
		names = append(names, n)
	}
	sort.Strings(names)
	v := r.list(names)
	return uint64(len(names))<<32 | uint64(put(b, l, v))
}
func (r *rawHost) getHeaderValues(k uint32, n unsafe.Pointer, nl uint32, b unsafe.Pointer, l uint32) uint64 {
	r.calls["get_header_values"]++
	vs := r.headers[k].Values(str(n, nl))
	return uint64(len(vs))<<32 | uint64(put(b, l, r.list(vs)))
}
func (r *rawHost) setHeaderValue(k uint32, n unsafe.Pointer, nl uint32, v unsafe.Pointer, vl uint32) {
	r.headers[k].Set(str(n, nl), str(v, vl))
}
func (r *rawHost) addHeaderValue(k uint32, n unsafe.Pointer, nl uint32, v unsafe.Pointer, vl uint32) {
	r.headers[k].Add(str(n, nl), str(v, vl))
}
func (r *rawHost) removeHeader(k uint32, n unsafe.Pointer, nl uint32) {
	r.headers[k].Del(str(n, nl))
}

// readBody streams: each call returns the next chunk, eof with the last.
func (r *rawHost) readBody(k uint32, b unsafe.Pointer, l uint32) uint64 {
	r.calls["read_body"]++
	rest := r.body[k][r.bodyRead[k]:]
	n := copy(mem(b, l), rest)
	r.bodyRead[k] += n
	var eof uint64
	if r.bodyRead[k] == len(r.body[k]) {
		eof = 1
	}
	return eof<<32 | uint64(n)
}
func (r *rawHost) writeBody(k uint32, b unsafe.Pointer, l uint32) {
	r.body[k] = append([]byte(nil), mem(b, l)...)
}
func (r *rawHost) getStatusCode() uint32  { return r.status }
func (r *rawHost) setStatusCode(c uint32) { r.status = c }

func lookup(m map[string]string, k string, b unsafe.Pointer, l uint32) uint64 {
	v, ok := m[k]
	if !ok {
		return uint64(abi.Missing) << 32
	}
	return uint64(abi.Found)<<32 | uint64(put(b, l, []byte(v)))
}
func (r *rawHost) getProperty(n unsafe.Pointer, nl uint32, b unsafe.Pointer, l uint32) uint64 {
	return lookup(r.props, str(n, nl), b, l)
}
func (r *rawHost) getValue(k unsafe.Pointer, kl uint32, b unsafe.Pointer, l uint32) uint64 {
	return lookup(r.values, str(k, kl), b, l)
}
func (r *rawHost) setValue(k unsafe.Pointer, kl uint32, v unsafe.Pointer, vl uint32) {
	r.values[str(k, kl)] = str(v, vl)
}
func (r *rawHost) counterIncr(k unsafe.Pointer, kl uint32, d, w int64, out unsafe.Pointer) uint32 {
	if str(k, kl) == "broken" {
		return abi.StatusError
	}
	o := mem(out, 16)
	binary.LittleEndian.PutUint64(o, uint64(d*10))
	binary.LittleEndian.PutUint64(o[8:], uint64(w/2))
	return abi.StatusOK
}
func (r *rawHost) kvGet(k unsafe.Pointer, kl uint32, b unsafe.Pointer, l uint32) uint64 {
	key := str(k, kl)
	if key == "broken" {
		return uint64(abi.StoreError) << 32
	}
	v, ok := r.kv[key]
	if !ok {
		return 0
	}
	return uint64(abi.Found)<<32 | uint64(put(b, l, v))
}
func (r *rawHost) kvSet(k unsafe.Pointer, kl uint32, v unsafe.Pointer, vl uint32, ttl int64) uint32 {
	r.kv[str(k, kl)] = append([]byte(nil), mem(v, vl)...)
	return abi.StatusOK
}
func (r *rawHost) kvDelete(k unsafe.Pointer, kl uint32) uint32 {
	key := str(k, kl)
	if _, ok := r.kv[key]; !ok {
		return abi.StatusNotFound
	}
	delete(r.kv, key)
	return abi.StatusOK
}
func (r *rawHost) metricDefine(kind uint32, n unsafe.Pointer, nl uint32, h unsafe.Pointer, hl uint32) int32 {
	r.names = append(r.names, str(n, nl)+"|"+str(h, hl))
	r.metrics = append(r.metrics, 0)
	return int32(len(r.metrics) - 1)
}
func (r *rawHost) metricRecord(id int32, v float64) { r.metrics[id] += v }
func (r *rawHost) declareStateless()                { r.stateless = true }
func (r *rawHost) declareRequestOnly()              { r.requestOnly = true }
func (r *rawHost) verifySignature(a unsafe.Pointer, al uint32, k unsafe.Pointer, kl uint32, d unsafe.Pointer, dl uint32, s unsafe.Pointer, sl uint32) uint32 {
	r.lastSig = []string{str(a, al), str(k, kl), str(d, dl), str(s, sl)}
	if str(s, sl) == "good" {
		return abi.StatusOK
	}
	return abi.StatusInvalid
}
func (r *rawHost) configError(m unsafe.Pointer, ml uint32) { r.cfgErr = str(m, ml) }

// install makes r the SDK's host for the test.
func install(t *testing.T, r *rawHost) {
	hostabi.SetHost(newABIHost(r))
	t.Cleanup(func() { hostabi.SetHost(nil) })
}

func TestABIHostRequestRoundTrip(t *testing.T) {
	r := newRawHost(t)
	install(t, r)
	long := strings.Repeat("v", 5000) // larger than the scratch buffer: forces a retry
	r.method = "POST"
	r.uri = "/a/b?x=1&y=2"
	r.headers[0].Add("X-Multi", "1")
	r.headers[0].Add("X-Multi", "")
	r.headers[0].Add("X-Multi", "3")
	r.headers[0].Set("X-Long", long)
	r.body[0] = []byte(strings.Repeat("0123456789", 10000))

	req := Request{}
	if got := req.Method(); got != "POST" {
		t.Errorf("Method = %q", got)
	}
	if req.Path() != "/a/b" || req.RawQuery() != "x=1&y=2" || req.Query().Get("y") != "2" {
		t.Errorf("Path %q RawQuery %q", req.Path(), req.RawQuery())
	}
	if got := req.Header().Values("X-Multi"); !reflect.DeepEqual(got, []string{"1", "", "3"}) {
		t.Errorf("Values(X-Multi) = %q, want [1  3] with the empty value kept", got)
	}
	if got := req.Header().Get("X-Long"); got != long {
		t.Errorf("Get(X-Long) has %d bytes, want %d", len(got), len(long))
	}
	if req.Header().Get("X-Missing") != "" || req.Header().Has("X-Missing") {
		t.Error("missing header reported present")
	}
	if got := req.Header().Names(); !reflect.DeepEqual(got, []string{"X-Long", "X-Multi"}) {
		t.Errorf("Names = %q", got)
	}
	body, err := req.Body()
	if err != nil || string(body) != string(r.body[0]) {
		t.Fatalf("Body: %d bytes, err %v; want %d bytes", len(body), err, len(r.body[0]))
	}
	if r.features&uint32(abi.FeatureBufferRequest) == 0 {
		t.Error("Body did not enable FeatureBufferRequest")
	}
	if n := r.calls["read_body"]; n > 8 {
		t.Errorf("read_body called %d times for 100 KB; chunks should grow", n)
	}
	if req.Protocol() != "HTTP/2.0" || req.SourceAddr() != "192.0.2.7:5555" {
		t.Errorf("Protocol %q SourceAddr %q", req.Protocol(), req.SourceAddr())
	}

	req.SetMethod("PUT")
	req.SetPath("/c")
	if r.method != "PUT" || r.uri != "/c?x=1&y=2" {
		t.Errorf("after SetMethod/SetPath: %s %s", r.method, r.uri)
	}
	req.SetQuery(map[string][]string{"z": {"a b"}})
	if r.uri != "/c?z=a+b" {
		t.Errorf("after SetQuery: %s", r.uri)
	}
	req.SetQuery(nil)
	if r.uri != "/c" {
		t.Errorf("after SetQuery(nil): %s", r.uri)
	}
	req.Header().Del("X-Long")
	req.Header().Add("X-Multi", "4")
	req.SetBody([]byte("new"))
	if r.headers[0].Get("X-Long") != "" || len(r.headers[0].Values("X-Multi")) != 4 || string(r.body[0]) != "new" {
		t.Errorf("headers %v body %q", r.headers[0], r.body[0])
	}
}

func TestABIHostRespond(t *testing.T) {
	r := newRawHost(t)
	install(t, r)
	act := RespondError(Response{}, 403, "no")
	if act != Stop || r.status != 403 || r.headers[1].Get("Content-Type") != "application/json" ||
		string(r.body[1]) != "{\"error\":\"no\"}\n" {
		t.Errorf("RespondError: %v %d %v %q", act, r.status, r.headers[1], r.body[1])
	}
	if (Response{}).Status() != 403 {
		t.Error("Status does not read back")
	}
}

func TestABIHostExtension(t *testing.T) {
	r := newRawHost(t)
	install(t, r)
	long := strings.Repeat("p", 3000)
	r.props[PropPeerID] = long
	r.props[PropClientIP] = ""

	if v, ok := Property(PropPeerID); !ok || v != long {
		t.Errorf("Property(peer_id) = %d bytes, %v", len(v), ok)
	}
	if v, ok := Property(PropClientIP); !ok || v != "" {
		t.Errorf("empty property = %q, %v; want found and empty", v, ok)
	}
	if _, ok := Property(PropSNI); ok {
		t.Error("missing property found")
	}
	SetValue("k", "v1")
	if v, ok := Value("k"); !ok || v != "v1" {
		t.Errorf("Value = %q %v", v, ok)
	}
	v, ttl, err := CounterIncr("c", 3, 4*time.Second)
	if err != nil || v != 30 || ttl != 2*time.Second {
		t.Errorf("CounterIncr = %d %v %v; want 30 2s (decoded from the 16-byte out area)", v, ttl, err)
	}
	if _, _, err := CounterIncr("broken", 1, time.Second); err == nil {
		t.Error("CounterIncr store error not reported")
	}
	if err := KVSet("key", []byte("val"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := KVGet("key"); err != nil || !ok || string(b) != "val" {
		t.Errorf("KVGet = %q %v %v", b, ok, err)
	}
	if _, ok, err := KVGet("nope"); ok || err != nil {
		t.Errorf("KVGet missing = %v %v", ok, err)
	}
	if _, _, err := KVGet("broken"); err == nil {
		t.Error("KVGet store error not reported")
	}
	if err := KVDelete("key"); err != nil {
		t.Error(err)
	}
	if err := KVDelete("key"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if err := VerifySignature("RS256", []byte("k"), []byte("d"), []byte("good")); err != nil {
		t.Error(err)
	}
	if err := VerifySignature("RS256", []byte("k"), []byte("d"), []byte("bad")); err != ErrInvalidSignature {
		t.Errorf("bad signature: %v", err)
	}
	if !reflect.DeepEqual(r.lastSig, []string{"RS256", "k", "d", "bad"}) {
		t.Errorf("verify_signature args %q", r.lastSig)
	}
	c := NewCounter("hits_total", "Hits.")
	c.Add(2)
	c.Inc()
	g := NewGauge("temp", "Temp.")
	g.Set(1.5)
	g.Set(-2)
	if r.metrics[0] != 3 || r.metrics[1] != -0.5 || r.names[0] != "hits_total|Hits." {
		t.Errorf("metrics %v names %v", r.metrics, r.names)
	}
	Logf(LevelDebug, "hidden %d", 1)
	Logf(LevelWarn, "shown %d", 2)
	if !reflect.DeepEqual(r.logs, []string{"shown 2"}) {
		t.Errorf("logs %q", r.logs)
	}
	if math.IsNaN(r.metrics[0]) {
		t.Fatal("unreachable")
	}
}

type cfgPlugin struct{ cfg struct{ Limit int } }

func (p *cfgPlugin) Configure() error {
	if err := Config(&p.cfg); err != nil {
		return err
	}
	if p.cfg.Limit <= 0 {
		return errLimit
	}
	return nil
}

var errLimit = &limitError{}

type limitError struct{}

func (*limitError) Error() string { return "limit must be positive" }

func (p *cfgPlugin) OnRequest(req Request, resp Response) Action { return Continue }

// TestHandleConfigError checks the load path of a Wasm guest: Handle with a
// host present declares the guest stateless, runs Configure and reports a
// refusal through config_error; requests then fail with 500.
func TestHandleConfigError(t *testing.T) {
	t.Cleanup(func() { hostabi.Register(nil) })
	tests := []struct {
		config, wantErr string
		wantNext        bool
	}{
		{`{"Limit":5}`, "", true},
		{`{"Limit":0}`, "limit must be positive", false},
		{`{"Limti":5}`, `unknown field "Limti"`, false},
	}
	for _, tt := range tests {
		r := newRawHost(t)
		r.config = tt.config
		install(t, r)
		Handle(&cfgPlugin{})
		if !r.stateless || !r.requestOnly {
			t.Errorf("declare_stateless %v, declare_request_only %v; want both for a request-only plugin", r.stateless, r.requestOnly)
		}
		if !strings.Contains(r.cfgErr, tt.wantErr) || (tt.wantErr == "") != (r.cfgErr == "") {
			t.Errorf("config %s: config_error %q, want %q", tt.config, r.cfgErr, tt.wantErr)
		}
		h, _ := hostabi.Current()
		if next := handleRequest(h); next != tt.wantNext {
			t.Errorf("config %s: next = %v", tt.config, next)
		}
		if !tt.wantNext && r.status != 500 {
			t.Errorf("misconfigured plugin answered %d, want 500", r.status)
		}
	}
}
