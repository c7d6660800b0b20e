package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/internal/plugintest"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Wasm plugin through the proxy")
	}
	k := keysForTest(t)
	plugin := plugintest.Plugin(t, "jwt-auth")
	env := plugintest.Start(t, `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: `+plugin+`
        config:
          jwks_file: jwks.json
          issuers: ["https://idp.test"]
          forward_claims: {sub: x-jwt-sub, tenant: x-tenant}
`, map[string]string{"jwks.json": jwksJSON(jwkOf(k.rsa, "r1", "RS256"), jwkOf(k.ec256, "e1", "ES256"), jwkOf(k.ed, "ed", ""))})

	now := time.Now()
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": "alice", "tenant": "acme", "iss": "https://idp.test", "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name      string
		auth      string
		status    int
		challenge string
	}{
		{"RS256", "Bearer " + signToken(t, "RS256", k.rsa, map[string]any{"kid": "r1"}, claims(nil)), 200, ""},
		{"ES256", "Bearer " + signToken(t, "ES256", k.ec256, map[string]any{"kid": "e1"}, claims(nil)), 200, ""},
		{"EdDSA", "Bearer " + signToken(t, "EdDSA", k.ed, map[string]any{"kid": "ed"}, claims(nil)), 200, ""},
		{"missing", "", 401, `Bearer realm="wasmgate"`},
		{"expired", "Bearer " + signToken(t, "RS256", k.rsa, map[string]any{"kid": "r1"}, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})), 401, `error_description="token expired"`},
		{"wrong issuer", "Bearer " + signToken(t, "RS256", k.rsa, map[string]any{"kid": "r1"}, claims(map[string]any{"iss": "https://evil.test"})), 401, `error_description="issuer not accepted"`},
		{"wrong key", "Bearer " + signToken(t, "RS256", k.rsa2, map[string]any{"kid": "r1"}, claims(nil)), 401, `error_description="signature invalid"`},
		{"HS256 with public key", "Bearer " + signToken(t, "HS256", []byte(pemOf(t, &k.rsa.PublicKey)), map[string]any{"kid": "r1"}, claims(nil)), 401, `not accepted`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"X-Jwt-Sub": "forged"}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			// Twice: the second request is answered from the token cache.
			for i := 0; i < 2; i++ {
				r := env.Do(t, "GET", "/v1/orders", hdr, "")
				if r.Status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
				}
				if tt.status != 200 {
					if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) {
						t.Fatalf("WWW-Authenticate = %q, want %q", got, tt.challenge)
					}
					continue
				}
				h := http.Header(r.Echo.Headers)
				if got := h.Values("X-Jwt-Sub"); len(got) != 1 || got[0] != "alice" || h.Get("X-Tenant") != "acme" {
					t.Fatalf("upstream headers = %v", h)
				}
			}
		})
	}

	// A broken JWKS is refused at load with the plugin's message and the
	// old config keeps serving.
	err := env.ReloadError(t, `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: `+plugin+`
        config: {jwks: {keys: [{kty: RSA, n: AQAB, e: AQAB}]}}
`)
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("reload with a broken JWKS: %v", err)
	}
	if r := env.Do(t, "GET", "/v1/orders", map[string]string{"Authorization": tests[0].auth}, ""); r.Status != 200 {
		t.Fatalf("old config not serving after refused reload: %d", r.Status)
	}
}

// BenchmarkJWTWasm measures jwt-auth inside the Wasm host, per request
// through a filter chain: RS256 and ES256, cold (cache_size 0, the
// signature is checked every time) and cached, with the signature math in
// the guest (Go crypto compiled to Wasm) or in the host (verify_signature).
func BenchmarkJWTWasm(b *testing.B) {
	k := keysForTest(b)
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), CallTimeout: time.Second, PoolWait: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close(ctx)
	path := plugintest.Plugin(b, "jwt-auth")
	now := time.Now()
	claims := map[string]any{"sub": "alice", "scope": "read write", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for _, c := range []struct {
		alg  string
		priv any
	}{{"RS256", k.rsa}, {"ES256", k.ec256}} {
		tok := signToken(b, c.alg, c.priv, map[string]any{"kid": "k"}, claims)
		jwks := jwksJSON(jwkOf(c.priv, "k", c.alg))
		for _, verify := range []string{"guest", "host"} {
			for _, mode := range []struct{ name, cache string }{{"cold", "0"}, {"cached", "1024"}} {
				if verify == "guest" && mode.name == "cached" {
					continue // the cached path does no signature math
				}
				b.Run(c.alg+"/"+verify+"/"+mode.name, func(b *testing.B) {
					cfg := `{"verify":"` + verify + `","cache_size":` + mode.cache + `,"jwks":` + jwks + `}`
					f, err := host.Factory().Build(ctx, filter.Spec{Name: "jwt-auth", Kind: "wasm", Path: path, Config: []byte(cfg)}, filter.Deps{})
					if err != nil {
						b.Fatal(err)
					}
					defer func() {
						if cl, ok := f.(filter.Closer); ok {
							_ = cl.Close(ctx)
						}
					}()
					chain := &filter.Chain{Entries: []filter.Entry{{Name: "jwt-auth", Kind: "wasm", Filter: f}}}
					r, _ := http.NewRequest("GET", "http://example.test/v1/x", nil)
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						r.Header = http.Header{"Authorization": {"Bearer " + tok}}
						x := filter.NewExchange(r, filter.Properties{RequestID: "b"})
						ran, next := chain.RunRequest(ctx, x)
						if !next {
							b.Fatalf("refused: %d %s", x.Response.StatusCode, x.Response.Header)
						}
						chain.RunResponse(ctx, x, ran)
					}
				})
			}
		}
	}
}
