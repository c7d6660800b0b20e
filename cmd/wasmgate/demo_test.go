package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestEdgeDemo runs configs/edge.yaml — the config `make run` serves — on
// free ports with the shipped plugins built from source, and checks what
// the demo promises: the open route, API key and JWT auth, 401 without
// credentials, and 429s in a burst.
func TestEdgeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five plugins")
	}
	src, err := os.ReadFile("../../configs/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v1 := httptest.NewServer(echo.Handler("v1"))
	defer v1.Close()
	v2 := httptest.NewServer(echo.Handler("v2"))
	defer v2.Close()
	httpAddr, httpsAddr := freeAddr(t), freeAddr(t)
	cfg := strings.NewReplacer(
		"127.0.0.1:8080", httpAddr,
		"127.0.0.1:8443", httpsAddr,
		"127.0.0.1:9901", "off",
		"address: off", "address: off",
		"127.0.0.1:9001", v1.Listener.Addr().String(),
		"127.0.0.1:9002", v2.Listener.Addr().String(),
		"../.wasmgate-demo/tls/", dir+"/",
	).Replace(string(src))
	for _, p := range []string{"api-key", "jwt-auth", "rate-limit", "authz", "transform"} {
		cfg = strings.ReplaceAll(cfg, "../build/plugins/"+p+".wasm", wasmbuild.Build(t, "plugins/"+p))
	}
	cfg += "\nwasm:\n  cache_dir: " + wasmbuild.CacheDir() + "\n"
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := proxy.NewGateway(ctx, proxy.GatewayOptions{ConfigPath: cfgPath, LogOutput: io.Discard, AccessOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := g.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	jwt, err := demoJWT(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr
	get := func(path string, hdr map[string]string) (*http.Response, echo.Reply) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep echo.Reply
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &rep)
		return resp, rep
	}
	tests := []struct {
		name     string
		path     string
		hdr      map[string]string
		status   int
		instance string
		check    func(t *testing.T, resp *http.Response, rep echo.Reply)
	}{
		{"public", "/public/hello", nil, 200, "v1", nil},
		{"api key", "/v1/orders", map[string]string{"x-api-key": demoAPIKey}, 200, "v1", func(t *testing.T, resp *http.Response, rep echo.Reply) {
			if http.Header(rep.Headers).Get("X-Consumer") != "demo" || resp.Header.Get("X-Served-By") != "wasmgate" || resp.Header.Get("RateLimit-Limit") != "5" {
				t.Errorf("chain effects missing: consumer %q served-by %q ratelimit %q", http.Header(rep.Headers).Get("X-Consumer"), resp.Header.Get("X-Served-By"), resp.Header.Get("RateLimit-Limit"))
			}
		}},
		{"no api key", "/v1/orders", nil, 401, "", nil},
		{"wrong api key", "/v1/orders", map[string]string{"x-api-key": "nope"}, 401, "", nil},
		{"jwt", "/v2/orders", map[string]string{"Authorization": "Bearer " + jwt}, 200, "v2", func(t *testing.T, resp *http.Response, rep echo.Reply) {
			h := http.Header(rep.Headers)
			if h.Get("X-Jwt-Sub") != "demo-user" || h.Get("X-User") != "demo-user" || h.Get("Authorization") != "" {
				t.Errorf("jwt effects: sub %q user %q authorization %q", h.Get("X-Jwt-Sub"), h.Get("X-User"), h.Get("Authorization"))
			}
		}},
		{"bad jwt", "/v2/orders", map[string]string{"Authorization": "Bearer " + jwt + "x"}, 401, "", nil},
		{"authz deny", "/v2/admin/x", map[string]string{"Authorization": "Bearer " + jwt}, 403, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, rep := get(tc.path, tc.hdr)
			if resp.StatusCode != tc.status || rep.Instance != tc.instance {
				t.Fatalf("%s: %d from %q, want %d from %q", tc.path, resp.StatusCode, rep.Instance, tc.status, tc.instance)
			}
			if tc.check != nil {
				tc.check(t, resp, rep)
			}
		})
	}
	// A burst of 20 on /v1/ (5 per second per consumer) shows 429s with Retry-After.
	limited := 0
	for i := 0; i < 20; i++ {
		resp, _ := get("/v1/burst", map[string]string{"x-api-key": demoAPIKey})
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if limited < 10 {
		t.Fatalf("burst of 20: %d answered 429, want at least 10", limited)
	}
}
