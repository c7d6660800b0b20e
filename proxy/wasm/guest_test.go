package wasm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// slow is a call timeout for tests that are not about timeouts: a loaded
// 2-core CI box must not turn scheduling delays into guest timeouts.
const slow = 5 * time.Second

func TestHeaderGuestThroughChain(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestHeader)
	if !p.stateless || !p.requestOnly {
		t.Fatalf("stateless=%v requestOnly=%v, want both (declared in init)", p.stateless, p.requestOnly)
	}
	c := &filter.Chain{Entries: []filter.Entry{{Name: "header", Kind: "wasm", Filter: p}}}
	for n := 0; n < 3; n++ { // pool of one: the instance must come back each time
		x := newExchange("GET", "/a")
		ran, next := c.RunRequest(context.Background(), x)
		if !next || ran != 1 {
			t.Fatalf("ran=%d next=%v decisions=%+v", ran, next, x.Decisions)
		}
		c.RunResponse(context.Background(), x, ran)
		if got := x.Request.Header.Get("X-Wasm"); got != "1" {
			t.Fatalf("X-Wasm = %q, want 1", got)
		}
	}
	if got := p.stats.calls.Load(); got != 3 {
		t.Fatalf("calls = %d, want 3 (handle_response skipped)", got)
	}
	// The time split the benchmark reports: host functions run inside guest
	// calls, so their time is part of (and less than) the call time.
	var st PluginStatus
	for _, s := range h.Plugins() {
		if s.Name == p.name {
			st = s
		}
	}
	if st.HostCalls < 3 || st.CallNs == 0 || st.HostNs == 0 || st.HostNs >= st.CallNs || st.AcquireNs == 0 {
		t.Fatalf("time split: host calls %d, call %dns, host %dns, acquire %dns", st.HostCalls, st.CallNs, st.HostNs, st.AcquireNs)
	}
}

// runAll sends one request through the all guest and a fake upstream.
func runAll(t *testing.T, p *plugin, x *filter.Exchange, upstream func(*filter.Exchange)) bool {
	t.Helper()
	next, err := p.HandleRequest(context.Background(), x)
	if err != nil {
		t.Fatalf("HandleRequest: %v", err)
	}
	if next && upstream != nil {
		upstream(x)
	}
	if next {
		if err := p.HandleResponse(context.Background(), x); err != nil {
			t.Fatalf("HandleResponse: %v", err)
		}
	}
	return next
}

func TestAllGuestRequestPhase(t *testing.T) {
	store := newMemStore()
	h, reg := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 2})
	p := buildGuest(t, h, guestAll, withConfig(map[string]any{"greeting": "hi"}), withStore(store), withName("all"))
	if p.stateless {
		t.Fatal("all guest keeps state in its memory; it must be pinned")
	}

	x := newExchange("POST", "/items?id=7",
		"X-In", "one", "X-In", "two", "X-Remove", "gone", "X-Upper-Body", "1",
		"X-Set-Method", "PUT", "X-Set-URI", "/rewritten?x=1")
	x.Request.Body = io.NopCloser(strings.NewReader("hello body"))
	x.Request.ContentLength = 10
	x.SetValue("pre", "from-earlier-filter")
	runAll(t, p, x, func(x *filter.Exchange) {
		x.Response.StatusCode = 200
		x.Response.Header.Set("Content-Type", "text/plain")
	})

	r := x.Request
	want := map[string]string{
		"X-Method":         "POST",
		"X-Proto":          "HTTP/1.1",
		"X-Source":         "192.0.2.7:5555",
		"X-Features":       "3",
		"X-Config":         `{"greeting":"hi"}`,
		"X-Has-X-In":       "true",
		"X-In-Count":       "2",
		"X-Prop-Client-Ip": "192.0.2.7",
		"X-Prop-Route":     "r1",
		"X-Prop-Missing":   "0",
		"X-Value-Pre":      "from-earlier-filter",
		"X-Hits":           "0:1:true",
		"X-Kv":             "/items?id=7",
		"X-Kv-Gone":        "0",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("request header %s = %q, want %q", k, got, v)
		}
	}
	if got := r.Header.Values("X-Added"); strings.Join(got, ",") != "a,b" {
		t.Errorf("X-Added = %q, want a,b", got)
	}
	if r.Header.Get("X-Remove") != "" {
		t.Error("X-Remove was not removed")
	}
	if r.Method != "PUT" || r.URL.Path != "/rewritten" || r.URL.RawQuery != "x=1" {
		t.Errorf("method/uri = %s %s?%s, want PUT /rewritten?x=1", r.Method, r.URL.Path, r.URL.RawQuery)
	}
	body, _ := io.ReadAll(r.Body)
	if string(body) != "HELLO BODY" || r.ContentLength != 10 {
		t.Errorf("request body = %q (len %d), want HELLO BODY", body, r.ContentLength)
	}
	if v, _ := x.Value("guest.seen"); v != "/items?id=7" {
		t.Errorf("value guest.seen = %q", v)
	}
	if _, ok := store.vals["wasm/all/last"]; !ok {
		t.Errorf("store keys not namespaced by filter name: %v", store.vals)
	}
	// Response phase ran on the pinned instance, which found its own state.
	rh := x.Response.Header
	if got := rh.Get("X-Req-Uri"); got != "/items?id=7" {
		t.Errorf("X-Req-URI = %q: handle_response did not run on the pinned instance", got)
	}
	if rh.Get("X-Value") != "/items?id=7" || rh.Get("X-Status-Seen") != "200" || rh.Get("X-Is-Error") != "0" {
		t.Errorf("response headers = %v", rh)
	}

	// A second request increments the shared counter.
	x2 := newExchange("GET", "/b")
	runAll(t, p, x2, nil)
	if got := x2.Request.Header.Get("X-Hits"); got != "0:2:true" {
		t.Errorf("second X-Hits = %q, want 0:2:true", got)
	}

	// Guest metrics are exported with the plugin label.
	if got := metricValue(t, reg, "all_requests_total", "all"); got != 2 {
		t.Errorf("all_requests_total = %v, want 2", got)
	}
	if got := metricValue(t, reg, "all_last_body_bytes", "all"); got != 10 {
		t.Errorf("all_last_body_bytes = %v, want 10", got)
	}
	if got := metricValue(t, reg, "all_uri_length", "all"); got != 2 {
		t.Errorf("all_uri_length count = %v, want 2", got)
	}
	if got := metricValue(t, reg, "wasmgate_wasm_calls_total", "all"); got != 4 {
		t.Errorf("wasmgate_wasm_calls_total = %v, want 4", got)
	}
}

func TestAllGuestResponsePhase(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))

	x := newExchange("GET", "/wrap", "X-Wrap-Response", "1")
	runAll(t, p, x, func(x *filter.Exchange) {
		x.Response.StatusCode = 200
		x.Response.Body = io.NopCloser(strings.NewReader("upstream says hi"))
	})
	b, _ := io.ReadAll(x.Response.Body)
	if string(b) != "wrapped:upstream says hi" || x.Response.StatusCode != 202 {
		t.Fatalf("response = %d %q, want 202 wrapped:upstream says hi", x.Response.StatusCode, b)
	}
	if x.Response.Trailer.Get("X-Trailer") != "t" {
		t.Errorf("trailer = %v", x.Response.Trailer)
	}

	// Upstream failure: handle_response still runs, with is_error=1.
	x = newExchange("GET", "/err")
	runAll(t, p, x, func(x *filter.Exchange) {
		x.IsError = true
		x.Response.StatusCode = 502
	})
	if x.Response.Header.Get("X-Is-Error") != "1" || x.Response.Header.Get("X-Status-Seen") != "502" {
		t.Errorf("error response headers = %v", x.Response.Header)
	}
}

func TestAllGuestLocalResponse(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	c := &filter.Chain{Entries: []filter.Entry{{Name: "all", Kind: "wasm", Filter: p}}}
	for n := 0; n < 2; n++ { // the instance must be back after a local answer
		x := newExchange("GET", "/deny")
		ran, next := c.RunRequest(context.Background(), x)
		if next || ran != 0 {
			t.Fatalf("next=%v ran=%d, want a local answer", next, ran)
		}
		b, _ := io.ReadAll(x.Response.Body)
		if x.Response.StatusCode != 401 || string(b) != "no entry\n" || x.Response.Header.Get("X-Denied-By") != "all" {
			t.Fatalf("local answer = %d %q %v", x.Response.StatusCode, b, x.Response.Header)
		}
	}
}

func TestAllGuestVerifySignature(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	data := "header.payload"
	sum := sha256.Sum256([]byte(data))
	r, s, _ := ecdsa.Sign(rand.Reader, k, sum[:])
	sig := append(pad32(r), pad32(s)...)
	bad := append([]byte(nil), sig...)
	bad[3] ^= 1
	for _, tc := range []struct {
		name string
		sig  []byte
		want string
	}{{"valid", sig, "0"}, {"tampered", bad, "3"}} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange("GET", "/v", "X-Verify-Alg", "ES256",
				"X-Verify-Key", base64.StdEncoding.EncodeToString(der),
				"X-Verify-Sig", base64.StdEncoding.EncodeToString(tc.sig),
				"X-Verify-Data", data)
			runAll(t, p, x, nil)
			if got := x.Request.Header.Get("X-Verify-Status"); got != tc.want {
				t.Fatalf("verify status = %q, want %q", got, tc.want)
			}
		})
	}
}

func pad32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func TestGuestHostHeader(t *testing.T) {
	// The Host header lives in Request.Host in Go; guests see it as "host".
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	x := newExchange("GET", "http://svc.example/h")
	runAll(t, p, x, nil)
	// Names seen: the 5 headers the guest set before listing, plus "host".
	if got := x.Request.Header.Get("X-Name-Count"); got != "6" || x.Request.Host != "svc.example" {
		t.Fatalf("name count %q host %q, want 6 names including host", got, x.Request.Host)
	}
	i := <-p.pool.free
	defer func() { p.pool.free <- i }()
	x = newExchange("GET", "http://svc.example/h")
	i.x, i.st = x, &reqState{}
	vs, ok := i.headerValues(0, []byte("HOST"))
	if !ok || len(vs) != 1 || vs[0] != "svc.example" {
		t.Fatalf("host values = %v", vs)
	}
	i.x, i.st = nil, nil
}

func TestAllGuestStoreDown(t *testing.T) {
	store := newMemStore()
	store.fail = true
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(store))
	x := newExchange("GET", "/s")
	runAll(t, p, x, nil)
	// The guest sees store errors as statuses and flags; the request goes on.
	if got := x.Request.Header.Get("X-Hits"); got != "2:0:false" {
		t.Errorf("X-Hits = %q, want status 2 (error)", got)
	}
	if got := x.Request.Header.Get("X-Kv-Gone"); got != "2" {
		t.Errorf("X-KV-Gone = %q, want found flag 2 (store error)", got)
	}
}

// TestInFlightSurvivesReload closes a plugin (as retiring a snapshot does)
// while a pinned request is between its phases: the request finishes on its
// instance, which is closed afterwards.
func TestInFlightSurvivesReload(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	x := newExchange("GET", "/inflight")
	if ok, err := p.HandleRequest(context.Background(), x); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.HandleResponse(context.Background(), x); err != nil {
		t.Fatalf("response phase after Close: %v", err)
	}
	if got := x.Response.Header.Get("X-Req-Uri"); got != "/inflight" {
		t.Fatalf("X-Req-URI = %q", got)
	}
	if n := p.pool.inUse.Load(); n != 0 || len(p.pool.free) != 0 {
		t.Fatalf("after close: in use %d idle %d", n, len(p.pool.free))
	}
}

// TestSDKDeclareRequestOnly: an SDK plugin that implements OnResponse but
// calls sdk.DeclareRequestOnly from Configure is called once per request.
func TestSDKDeclareRequestOnly(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	for _, tt := range []struct {
		name  string
		cfg   map[string]any
		calls uint64
	}{
		{"request headers only", map[string]any{"request": map[string]string{"X-A": "1"}}, 1},
		{"request and response headers", map[string]any{"request": map[string]string{"X-A": "1"}, "response": map[string]string{"X-B": "2"}}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := buildGuest(t, h, "pluginsdk-examples/add-header", withConfig(tt.cfg), withName(tt.name))
			if p.requestOnly != (tt.calls == 1) {
				t.Fatalf("requestOnly = %v", p.requestOnly)
			}
			c := &filter.Chain{Entries: []filter.Entry{{Name: "add", Kind: "wasm", Filter: p}}}
			x := newExchange("GET", "/a")
			ran, next := c.RunRequest(context.Background(), x)
			if !next {
				t.Fatal("chain stopped")
			}
			c.RunResponse(context.Background(), x, ran)
			if got := p.stats.calls.Load(); got != tt.calls {
				t.Fatalf("guest calls = %d, want %d", got, tt.calls)
			}
			if x.Request.Header.Get("X-A") != "1" {
				t.Fatal("request header not set")
			}
		})
	}
}
