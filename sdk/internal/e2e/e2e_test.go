package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/store"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

type env struct {
	host  *wasm.Host
	reg   *prometheus.Registry
	store *store.Memory
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := wasm.NewHost(context.Background(), wasm.HostOptions{
		CacheDir: wasmbuild.CacheDir(),
		PoolSize: 2,
		Logger:   zap.NewNop(),
		Metrics:  reg,
	})
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	st := store.NewMemory()
	t.Cleanup(func() {
		_ = h.Close(context.Background())
		_ = st.Close(context.Background())
	})
	return &env{host: h, reg: reg, store: st}
}

// build loads the guest at pkg (module-relative) with cfg as its config.
func (e *env) build(t *testing.T, pkg, name, cfg string) (filter.Filter, error) {
	t.Helper()
	f, err := e.host.Factory().Build(context.Background(), filter.Spec{
		Name: name, Kind: "wasm", Path: wasmbuild.Build(t, pkg), Config: json.RawMessage(cfg),
		FailurePolicy: filter.FailClosed,
	}, filter.Deps{Logger: zap.NewNop(), Metrics: e.reg, Store: e.store, Mode: "edge"})
	if err == nil {
		t.Cleanup(func() {
			if c, ok := f.(filter.Closer); ok {
				_ = c.Close(context.Background())
			}
		})
	}
	return f, err
}

func exchange(method, target, body string, hdr ...string) *filter.Exchange {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return filter.NewExchange(req, filter.Properties{
		ClientAddr: "192.0.2.7:5555", ClientIP: "192.0.2.7", Route: "r1", Mode: "edge",
		RequestID: "req-1", Protocol: "HTTP/1.1", PeerID: "spiffe://example.org/ns/a/sa/b",
	})
}

// TestAllAPIOnRealHost runs the all-API guest through both phases on the
// proxy's Wasm host and checks what each SDK call saw and changed.
func TestAllAPIOnRealHost(t *testing.T) {
	e := newEnv(t)
	f, err := e.build(t, "sdk/testdata/allapi", "allapi", `{"deny":"/deny"}`)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	x := exchange("PATCH", "/rewrite?x=1", "hello", "X-Multi", "a", "X-Multi", "b", "X-Remove-Me", "1")
	next, err := f.HandleRequest(context.Background(), x)
	if err != nil || !next {
		t.Fatalf("HandleRequest: next=%v err=%v", next, err)
	}
	h := x.Request.Header
	want := map[string]string{
		"X-Seen-Method": "PATCH", "X-Seen-Uri": "/rewrite?x=1", "X-Seen-Query": "x=1",
		"X-Seen-Protocol": "HTTP/1.1", "X-Seen-Body-Len": "5", "X-Seen-Values": "2",
		"X-Seen-Peer": "spiffe://example.org/ns/a/sa/b", "X-Seen-Count": "1",
		"X-Seen-Ttl-Positive": "true", "X-Seen-Kv": "true", "X-Seen-Sig-Invalid": "true",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-Remove-Me") != "" {
		t.Error("X-Remove-Me not removed")
	}
	if x.Request.Method != "POST" || x.Request.URL.Path != "/rewritten" {
		t.Errorf("request now %s %s, want POST /rewritten", x.Request.Method, x.Request.URL)
	}
	body, _ := x.RequestBody()
	if string(body) != "hello+allapi" {
		t.Errorf("upstream body %q", body)
	}

	rf, ok := f.(filter.ResponseFilter)
	if !ok {
		t.Fatal("allapi has OnResponse but the filter has no response phase")
	}
	x.Response = &filter.Response{StatusCode: 200, Header: map[string][]string{}, Body: io.NopCloser(strings.NewReader("resp"))}
	if err := rf.HandleResponse(context.Background(), x); err != nil {
		t.Fatalf("HandleResponse: %v", err)
	}
	rh := x.Response.Header
	if rh.Get("X-Resp-Uri") != "/rewrite?x=1" || rh.Get("X-Resp-Error") != "false" || rh.Get("X-Resp-Status") != "200" {
		t.Errorf("response headers %v", rh)
	}
	rb, _ := io.ReadAll(x.Response.Body)
	if x.Response.StatusCode != 203 || string(rb) != "resp+resp" {
		t.Errorf("response %d %q, want 203 resp+resp", x.Response.StatusCode, rb)
	}

	// A second request sees the shared counter move.
	x2 := exchange("GET", "/", "")
	if next, err := f.HandleRequest(context.Background(), x2); err != nil || !next {
		t.Fatalf("second request: %v %v", next, err)
	}
	if got := x2.Request.Header.Get("X-Seen-Count"); got != "2" {
		t.Errorf("count on second request = %q, want 2", got)
	}

	// Local answer.
	x3 := exchange("GET", "/deny", "")
	next, err = f.HandleRequest(context.Background(), x3)
	if err != nil || next {
		t.Fatalf("deny: next=%v err=%v", next, err)
	}
	db, _ := io.ReadAll(x3.Response.Body)
	if x3.Response.StatusCode != 403 || x3.Response.Header.Get("Content-Type") != "application/json" ||
		string(db) != "{\"error\":\"denied by allapi\"}\n" {
		t.Errorf("deny answer %d %v %q", x3.Response.StatusCode, x3.Response.Header, db)
	}

	if got := metricValue(t, e.reg, "allapi_calls_total"); got != 3 {
		t.Errorf("allapi_calls_total = %v, want 3", got)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestConfigRefusalOnRealHost checks that Configure's error reaches the
// proxy through config_error during _initialize.
func TestConfigRefusalOnRealHost(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct{ cfg, want string }{
		{`{"reject":true}`, "allapi: config says reject"},
		{`{"dney":"/x"}`, `unknown field "dney"`},
	} {
		_, err := e.build(t, "sdk/testdata/allapi", "allapi", tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %s: err %v, want it to contain %q", tt.cfg, err, tt.want)
		}
	}
}

// TestRequestOnlyExampleOnRealHost runs an example plugin without
// OnResponse (declare_request_only) on the real host.
func TestRequestOnlyExampleOnRealHost(t *testing.T) {
	e := newEnv(t)
	f, err := e.build(t, "pluginsdk-examples/deny-path", "deny-path", `{"prefixes":["/admin"]}`)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, tt := range []struct {
		path string
		next bool
	}{{"/admin/x", false}, {"/ok", true}, {"/administrator", true}} {
		x := exchange("GET", tt.path, "")
		next, err := f.HandleRequest(context.Background(), x)
		if err != nil || next != tt.next {
			t.Errorf("%s: next=%v err=%v, want next=%v", tt.path, next, err, tt.next)
		}
		if !tt.next && x.Response.StatusCode != 403 {
			t.Errorf("%s: status %d", tt.path, x.Response.StatusCode)
		}
	}
}

// BenchmarkSDKFilter measures one SDK plugin per request on the real host,
// with the loop of proxy/wasm's BenchmarkWasmFilter: "header" is the SDK
// twin of that benchmark's hand-written guest (one header write), then
// deny-path (request phase only, one get_uri) and add-header (both phases).
func BenchmarkSDKFilter(b *testing.B) {
	cases := []struct{ name, pkg, cfg string }{
		{"header", "sdk/testdata/header", ``},
		{"deny-path", "pluginsdk-examples/deny-path", `{"prefixes":["/admin"]}`},
		{"add-header", "pluginsdk-examples/add-header", `{"request":{"X-A":"1"},"response":{"X-B":"2"}}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEnvB(b)
			f, err := e.host.Factory().Build(context.Background(), filter.Spec{
				Name: c.name, Kind: "wasm", Path: wasmbuild.Build(b, c.pkg), Config: json.RawMessage(c.cfg),
			}, filter.Deps{Logger: zap.NewNop(), Metrics: e.reg, Store: e.store})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if cl, ok := f.(filter.Closer); ok {
					_ = cl.Close(context.Background())
				}
			}()
			rf, _ := f.(filter.ResponseFilter)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				r := httptest.NewRequest("GET", "http://example.test/api/x?q=1", nil)
				for pb.Next() {
					r.Header = http.Header{"Accept": {"*/*"}}
					x := filter.NewExchange(r, filter.Properties{RequestID: "b"})
					next, err := f.HandleRequest(ctx, x)
					if err == nil && next && rf != nil {
						err = rf.HandleResponse(ctx, x)
					}
					if err != nil || !next {
						b.Errorf("next=%v err=%v", next, err)
						return
					}
				}
			})
		})
	}
}

func newEnvB(b *testing.B) *env {
	b.Helper()
	reg := prometheus.NewRegistry()
	// A long call timeout: this measures cost; a loaded machine must not
	// turn scheduling delays into timeouts.
	h, err := wasm.NewHost(context.Background(), wasm.HostOptions{
		CacheDir: wasmbuild.CacheDir(), Logger: zap.NewNop(), Metrics: reg, CallTimeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	st := store.NewMemory()
	b.Cleanup(func() {
		_ = h.Close(context.Background())
		_ = st.Close(context.Background())
	})
	return &env{host: h, reg: reg, store: st}
}
