package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/plugintest"
	"github.com/wasmgate/wasmgate/plugins/keyhash"
)

const hsSecret = "integration-secret-0123456789abcdef"

func hsToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(hsSecret))
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

// TestIntegration runs authz behind jwt-auth and api-key in one chain, as
// the edge demo does: authentication is optional in both, authz decides.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Wasm plugins through the proxy")
	}
	jwt, apiKey, authz := plugintest.Plugin(t, "jwt-auth"), plugintest.Plugin(t, "api-key"), plugintest.Plugin(t, "authz")
	chain := func(dryRun bool) string {
		return `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: ` + jwt + `
        config: {optional: true, keys: [{alg: HS256, secret: "` + hsSecret + `"}]}
      - plugin: ` + apiKey + `
        config: {optional: true, keys: [{hash: "` + keyhash.Hash("partner-key") + `", consumer: partner, tier: gold}]}
      - plugin: ` + authz + `
        config:
          dry_run: ` + map[bool]string{true: "true", false: "false"}[dryRun] + `
          rules:
            - {name: no-delete, action: deny, methods: [DELETE], roles: [viewer]}
            - {name: admins, action: allow, roles: [admin]}
            - {name: viewers-read, action: allow, roles: [viewer], methods: [GET]}
            - {name: gold-partners, action: allow, consumers: ["*"], values: {tier: [gold]}, paths: ["/v1/partners/**"]}
`
	}
	env := plugintest.Start(t, chain(false), nil)
	exp := time.Now().Add(time.Hour).Unix()
	admin := "Bearer " + hsToken(t, map[string]any{"sub": "root", "roles": []string{"admin"}, "exp": exp})
	viewer := "Bearer " + hsToken(t, map[string]any{"sub": "v", "roles": "viewer", "exp": exp})
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		rule               string
	}{
		{"admin delete", "DELETE", "/v1/x", map[string]string{"Authorization": admin}, 200, ""},
		{"viewer get", "GET", "/v1/x", map[string]string{"Authorization": viewer}, 200, ""},
		{"viewer post", "POST", "/v1/x", map[string]string{"Authorization": viewer}, 403, ""},
		{"viewer delete", "DELETE", "/v1/x", map[string]string{"Authorization": viewer}, 403, "no-delete"},
		{"partner", "GET", "/v1/partners/feed", map[string]string{"X-Api-Key": "partner-key"}, 200, ""},
		{"partner elsewhere", "GET", "/v1/admin", map[string]string{"X-Api-Key": "partner-key"}, 403, ""},
		{"partner traversal", "GET", "/v1/partners/../admin", map[string]string{"X-Api-Key": "partner-key"}, 403, ""},
		{"anonymous", "GET", "/v1/x", nil, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.Do(t, tt.method, tt.path, tt.hdr, "")
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if tt.status == 403 {
				var body struct {
					Error, Reason, Rule string
				}
				r.JSON(t, &body)
				if body.Error != "forbidden" || body.Rule != tt.rule || body.Reason == "" {
					t.Fatalf("body %s", r.Body)
				}
			}
		})
	}
	// dry_run lets everything through.
	if err := env.ReloadError(t, chain(true)); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/x", "/v1/admin"} {
		if r := env.Do(t, "DELETE", path, map[string]string{"Authorization": viewer}, ""); r.Status != 200 {
			t.Fatalf("dry run %s: %d %s", path, r.Status, r.Body)
		}
	}
	if err := env.ReloadError(t, strings.Replace(chain(false), "action: deny", "action: block", 1)); err == nil || !strings.Contains(err.Error(), `rules[0].action: "block"`) {
		t.Fatalf("reload with a bad rule: %v", err)
	}
}

// BenchmarkWasm measures authz per request inside the Wasm host: eight
// rules, the request allowed by the last one.
func BenchmarkWasm(b *testing.B) {
	var rules []string
	for i := 0; i < 7; i++ {
		rules = append(rules, `{"action":"allow","roles":["r`+strconv.Itoa(i)+`"],"paths":["/admin/**"]}`)
	}
	rules = append(rules, `{"name":"readers","action":"allow","methods":["GET"],"path_prefixes":["/v1/"]}`)
	c := plugintest.NewChain(b, plugintest.Filter{Plugin: "authz", Config: `{"rules":[` + strings.Join(rules, ",") + `]}`})
	ctx := context.Background()
	r, _ := http.NewRequest("GET", "http://example.test/v1/orders/42", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header = http.Header{"Accept": {"*/*"}}
		if next, status := plugintest.RunChain(ctx, c, r); !next {
			b.Fatalf("refused: %d", status)
		}
	}
}
