package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/internal/plugintest"
	"github.com/wasmgate/wasmgate/plugins/keyhash"
)

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Wasm plugins through the proxy")
	}
	apiKey, transform := plugintest.Plugin(t, "api-key"), plugintest.Plugin(t, "transform")
	env := plugintest.Start(t, `
  - name: api
    match: {path: {prefix: /v1/}}
    cluster: echo
    filters:
      - plugin: `+apiKey+`
        config: {keys: [{hash: "`+keyhash.Hash("k1")+`", consumer: acme}]}
      - plugin: `+transform+`
        config:
          request:
            headers: {set: {x-who: "${consumer}", x-rid: "${request_id}"}, remove: [x-debug]}
            path: {regex: "^/v1/users/([0-9]+)$", replacement: "/v1/internal/${consumer}/users/$1"}
            query: {remove: [debug], set: {caller: "${consumer}"}}
            body: {set: {meta.consumer: "${consumer}"}, remove: [password]}
          response:
            headers: {set: {x-served-for: "${consumer}"}}
            body: {remove: [host, proto], set: {api_version: 2}}
            status: {"404": 410}
`, nil)
	key := map[string]string{"X-Api-Key": "k1", "X-Debug": "1", "Content-Type": "application/json"}

	r := env.Do(t, "POST", "/v1/users/42?debug=1&x=y", key, `{"name":"Ann","password":"s3cret"}`)
	if r.Status != 200 || r.Header.Get("X-Served-For") != "acme" {
		t.Fatalf("status %d headers %v body %s", r.Status, r.Header, r.Body)
	}
	// The response body (the echo's report) was edited too.
	var got map[string]any
	r.JSON(t, &got)
	if got["path"] != "/v1/internal/acme/users/42" || got["query"] != "caller=acme&x=y" || got["api_version"] != float64(2) {
		t.Fatalf("upstream saw %v", got)
	}
	if _, ok := got["proto"]; ok {
		t.Fatalf("response body edit did not remove proto: %v", got)
	}
	var echoed struct {
		Headers http.Header `json:"headers"`
	}
	r.JSON(t, &echoed)
	if h := echoed.Headers; h.Get("X-Who") != "acme" || h.Get("X-Rid") == "" || h.Get("X-Debug") != "" {
		t.Fatalf("upstream headers = %v", h)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(got["body"].(string)), &sent); err != nil {
		t.Fatalf("upstream body %q: %v", got["body"], err)
	}
	if sent["password"] != nil || sent["meta"].(map[string]any)["consumer"] != "acme" || sent["name"] != "Ann" {
		t.Fatalf("upstream body = %v", sent)
	}

	// Status mapping.
	r = env.Do(t, "GET", "/v1/things?status=404", key, "")
	if r.Status != 410 {
		t.Fatalf("status mapping: %d", r.Status)
	}
	// A non-JSON request body passes unchanged.
	form := map[string]string{"X-Api-Key": "k1", "Content-Type": "application/x-www-form-urlencoded"}
	r = env.Do(t, "POST", "/v1/form", form, "a=1&password=x")
	if !strings.Contains(r.Body, `"body":"a=1\u0026password=x"`) && !strings.Contains(r.Body, `"body":"a=1&password=x"`) {
		t.Fatalf("form body changed: %s", r.Body)
	}
}

// BenchmarkWasm measures transform per request inside the Wasm host with
// the edge demo's header edits (no body edits).
func BenchmarkWasm(b *testing.B) {
	c := plugintest.NewChain(b, plugintest.Filter{Plugin: "transform", Config: `{
		"request":{"headers":{"set":{"x-consumer":"${consumer}","x-request-id":"${request_id}"},"remove":["x-debug"]}},
		"response":{"headers":{"set":{"x-served-by":"wasmgate"},"remove":["x-echo-instance"]}}}`})
	ctx := context.Background()
	r, _ := http.NewRequest("GET", "http://example.test/v1/x", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header = http.Header{"Accept": {"*/*"}}
		if next, status := plugintest.RunChain(ctx, c, r); !next {
			b.Fatalf("refused: %d", status)
		}
	}
}
