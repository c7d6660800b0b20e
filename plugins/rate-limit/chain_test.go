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
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/plugins/keyhash"
	"github.com/wasmgate/wasmgate/proxy"
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
      - plugin: ` + rateLimit + `
        config:
          limits:
            - {name: per-consumer, requests: 2, window: 1h, key: [consumer], tiers: {gold: 5}}
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
	tests := []struct {
		name    string
		keys    []string // sent in turn
		allowed int
		limit   string
	}{
		{"gold tier gets its quota", []string{"alice-key"}, 5, "5"},
		{"default quota, shared by the consumer's keys", []string{"bob-key", "bob-key-2"}, 2, "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allowed := 0
			for i := range 10 {
				resp := do(tc.keys[i%len(tc.keys)])
				switch resp.StatusCode {
				case 200:
					allowed++
					if got := resp.Header.Get("RateLimit-Limit"); got != tc.limit {
						t.Fatalf("allowed response RateLimit-Limit = %q, want %s", got, tc.limit)
					}
					want := strconv.Itoa(mustAtoi(t, tc.limit) - allowed)
					if got := resp.Header.Get("RateLimit-Remaining"); got != want {
						t.Fatalf("RateLimit-Remaining = %q, want %s", got, want)
					}
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
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
