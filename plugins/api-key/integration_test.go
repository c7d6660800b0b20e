package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/internal/plugintest"
	"github.com/wasmgate/wasmgate/plugins/keyhash"
)

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Wasm plugin through the proxy")
	}
	plugin := plugintest.Plugin(t, "api-key")
	env := plugintest.Start(t, `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: `+plugin+`
        config:
          query: api_key
          tier_header: x-tier
          keys:
            - {hash: "`+keyhash.Hash("alice-key")+`", consumer: alice, tier: gold}
            - {hash: "`+keyhash.Hash("bob-key")+`", consumer: bob}
  - name: open
    match: {path: {prefix: /public/}}
    cluster: echo
`, nil)
	tests := []struct {
		name, target, key string
		status            int
		consumer, tier    string
		reason            string
	}{
		{"header", "/v1/a", "alice-key", 200, "alice", "gold", ""},
		{"query", "/v1/a?api_key=bob-key&x=1", "", 200, "bob", "", ""},
		{"missing", "/v1/a", "", 401, "", "", "missing API key"},
		{"unknown", "/v1/a", "eve-key", 401, "", "", "invalid API key"},
		{"public route needs none", "/public/a", "", 200, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"X-Consumer": "forged"}
			if tt.key != "" {
				hdr["X-Api-Key"] = tt.key
			}
			r := env.Do(t, "GET", tt.target, hdr, "")
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if tt.status != 200 {
				var body struct{ Reason string }
				r.JSON(t, &body)
				if body.Reason != tt.reason || r.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("body %s", r.Body)
				}
				return
			}
			h := http.Header(r.Echo.Headers)
			if tt.consumer == "" {
				if h.Get("X-Consumer") != "forged" {
					t.Fatalf("route without the plugin changed headers: %v", h)
				}
				return
			}
			if got := h.Values("X-Consumer"); len(got) != 1 || got[0] != tt.consumer || h.Get("X-Tier") != tt.tier {
				t.Fatalf("upstream headers = %v", h)
			}
			if h.Get("X-Api-Key") != "" || strings.Contains(r.Echo.Query, "api_key") {
				t.Fatalf("key reached the upstream: %v %q", h, r.Echo.Query)
			}
		})
	}
	if err := env.ReloadError(t, `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: `+plugin+`
        config: {keys: [{hash: plain-text-key, consumer: a}]}
`); err == nil || !strings.Contains(err.Error(), "keys[0].hash") {
		t.Fatalf("reload with a plain key: %v", err)
	}
}

// BenchmarkWasm measures api-key per request inside the Wasm host (hash
// the presented key, compare with every configured hash, set the consumer).
func BenchmarkWasm(b *testing.B) {
	c := plugintest.NewChain(b, plugintest.Filter{Plugin: "api-key", Config: `{"keys":[
		{"hash":"` + keyhash.Hash("alice-key") + `","consumer":"alice","tier":"gold"},
		{"hash":"` + keyhash.Hash("bob-key") + `","consumer":"bob"}]}`})
	ctx := context.Background()
	r, _ := http.NewRequest("GET", "http://example.test/v1/x", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header = http.Header{"X-Api-Key": {"alice-key"}}
		if next, status := plugintest.RunChain(ctx, c, r); !next {
			b.Fatalf("refused: %d", status)
		}
	}
}
