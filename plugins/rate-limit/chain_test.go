package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/redistest"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/plugins/keyhash"
	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/store"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

// TestChainWithAPIKey runs api-key then rate-limit in the real proxy and
// Wasm host (in-process, memory store): the consumer and tier that api-key
// sets as per-request values key and size the limit, and the RateLimit
// headers reach the client on allowed responses.
func TestChainWithAPIKey(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Wasm plugins through the proxy")
	}
	ctx := context.Background()
	apiKey := wasmbuild.Build(t, "plugins/api-key")
	rateLimit := wasmbuild.Build(t, "plugins/rate-limit")
	up := httptest.NewServer(echo.Handler("echo"))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	cfg := `listeners: [{name: public, address: "127.0.0.1:0"}]
clusters:
  - {name: echo, endpoints: ["` + up.Listener.Addr().String() + `"]}
routes:
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: ` + apiKey + `
        config:
          keys:
            - {hash: "` + keyhash.Hash("alice-key") + `", consumer: alice, tier: gold}
            - {hash: "` + keyhash.Hash("bob-key") + `", consumer: bob}
            - {hash: "` + keyhash.Hash("bob-key-2") + `", consumer: bob}
      - name: rl
        plugin: ` + rateLimit + `
        config:
          limits:
            - {name: per-consumer, requests: 2, window: 1h, key: [consumer], tiers: {gold: 5}}
            - {name: per-route, requests: 6, window: 1h, key: [route]}
`
	path := filepath.Join(dir, "wasmgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), Logger: log, PoolWait: time.Second, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	reg := filter.NewRegistry()
	reg.Register("wasm", host.Factory())
	srv := proxy.New(proxy.Options{ConfigPath: path, Registry: reg, Logger: log, Deps: filter.Deps{Logger: log, Store: st}})
	if err := srv.Reload(ctx); err != nil {
		t.Fatalf("load config: %v", err)
	}
	front := httptest.NewServer(srv)
	t.Cleanup(func() {
		front.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, err := range []error{srv.Close(cctx), host.Close(cctx), st.Close(cctx)} {
			if err != nil {
				t.Error(err)
			}
		}
	})

	do := func(key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", front.URL+"/v1/items", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// Sent in order: alice (gold: 5 per consumer) uses 5 of the route's 6,
	// so bob (default: 2 per consumer) gets only the route's last one.
	tests := []struct {
		name      string
		keys      []string // sent in turn
		allowed   int
		limits    []string // RateLimit-Limit of each allowed response
		remaining []string
	}{
		{"gold tier gets its quota", []string{"alice-key"}, 5,
			[]string{"5", "5", "5", "5", "5"}, []string{"4", "3", "2", "1", "0"}},
		{"the route limit applies across consumers", []string{"bob-key", "bob-key-2"}, 1,
			[]string{"6"}, []string{"0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allowed := 0
			for i := range 10 {
				resp := do(tc.keys[i%len(tc.keys)])
				switch resp.StatusCode {
				case 200:
					if allowed >= len(tc.limits) {
						t.Fatalf("request %d allowed, want only %d", i, tc.allowed)
					}
					if got := resp.Header.Get("RateLimit-Limit"); got != tc.limits[allowed] {
						t.Fatalf("allowed response %d: RateLimit-Limit = %q, want %s", allowed, got, tc.limits[allowed])
					}
					if got := resp.Header.Get("RateLimit-Remaining"); got != tc.remaining[allowed] {
						t.Fatalf("allowed response %d: RateLimit-Remaining = %q, want %s", allowed, got, tc.remaining[allowed])
					}
					if got := resp.Header.Get("RateLimit-Policy"); got != "2;w=3600, 6;w=3600" && got != "5;w=3600, 6;w=3600" {
						t.Fatalf("RateLimit-Policy = %q", got)
					}
					allowed++
				case 429:
					if resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit-Remaining") != "0" {
						t.Fatalf("429 headers: %v", resp.Header)
					}
				default:
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			if allowed != tc.allowed {
				t.Fatalf("allowed %d of 10, want %d", allowed, tc.allowed)
			}
		})
	}
	// Requests denied by the route limit were refunded on the consumer
	// limit: bob's counter holds only his one allowed request.
	idx := strconv.FormatInt(time.Now().UnixNano()/int64(time.Hour), 10)
	for key, want := range map[string]string{
		"wasm/rl/rate-limit:per-consumer:3.bob:" + idx:   "1",
		"wasm/rl/rate-limit:per-consumer:5.alice:" + idx: "5",
		"wasm/rl/rate-limit:per-route:3.api:" + idx:      "6",
	} {
		if got, ok, err := st.Get(ctx, key); err != nil || !ok || string(got) != want {
			t.Errorf("store %s = %q (found %v, %v), want %s", key, got, ok, err, want)
		}
	}
}

// BenchmarkRateLimitWasm measures one request and response through the
// rate-limit plugin in the real Wasm host: two limits, each a counter
// increment plus a read of the previous window, with the memory store and
// (when redis-server is installed) the Redis store.
func BenchmarkRateLimitWasm(b *testing.B) {
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), CallTimeout: time.Second, PoolWait: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close(ctx)
	path := wasmbuild.Build(b, "plugins/rate-limit")
	cfg := `{"limits":[{"name":"s","requests":1000000000,"window":"1s"},{"name":"h","requests":1000000000,"window":"1h","key":["client_ip","route"]}]}`
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"memory", func(*testing.B) store.Store { return store.NewMemory() }},
		{"redis", func(b *testing.B) store.Store {
			addr, _, _ := redistest.Start(b)
			s, err := store.NewRedis(ctx, config.Redis{Address: addr, Timeout: time.Second}, store.RedisOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, sc := range stores {
		b.Run(sc.name, func(b *testing.B) {
			st := sc.open(b)
			defer st.Close(ctx)
			f, err := host.Factory().Build(ctx, filter.Spec{Name: "rate-limit", Kind: "wasm", Path: path, Config: []byte(cfg)}, filter.Deps{Store: st})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if cl, ok := f.(filter.Closer); ok {
					_ = cl.Close(ctx)
				}
			}()
			chain := &filter.Chain{Entries: []filter.Entry{{Name: "rate-limit", Kind: "wasm", Filter: f}}}
			r, _ := http.NewRequest("GET", "http://example.test/v1/x", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x := filter.NewExchange(r, filter.Properties{RequestID: "b", ClientIP: "10.0.0.1", Route: "api"})
				ran, next := chain.RunRequest(ctx, x)
				if !next {
					b.Fatalf("refused: %d", x.Response.StatusCode)
				}
				chain.RunResponse(ctx, x, ran)
			}
		})
	}
}
