package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

const pluginCfg = `{
	"max_body_bytes": 200,
	"request": {
		"headers": {"set": {"x-consumer": "${consumer}", "x-request-id": "${request_id}"}, "remove": ["x-debug"], "rename": {"x-old": "x-new"}},
		"path": {"regex": "^/v1/users/([^/]+)$", "replacement": "/internal/${consumer}/users/$1"},
		"query": {"remove": ["debug"], "add": {"sub": "${jwt.sub}"}},
		"body": {"set": {"meta.by": "${jwt.sub}"}, "remove": ["password"], "rename": {"name": "full_name"}}
	},
	"response": {
		"headers": {"set": {"x-served-for": "${consumer}"}, "remove": ["server"]},
		"body": {"remove": ["internal"], "set": {"api_version": 2}},
		"status": {"404": 410}
	}
}`

func jsonUpstream(status int, ct, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Server", "upstream/1.0")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func newHost(t *testing.T, up http.Handler) *sdktest.Host {
	h := sdktest.New(t)
	h.Values = map[string]string{"consumer": "acme", "jwt.sub": "alice"}
	h.Upstream = up
	if err := h.Configure(pluginCfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPluginRequest(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	h := newHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
	}))
	req := sdktest.NewRequest("POST", "/v1/users/42?debug=1&x=y", `{"name":"Ann","password":"s3cret"}`)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Debug", "1")
	req.Header.Set("X-Old", "v")
	res := h.Run(req)
	if !res.UpstreamCalled {
		t.Fatalf("status %d", res.Status)
	}
	if got.URL.Path != "/internal/acme/users/42" || got.URL.RawQuery != "sub=alice&x=y" {
		t.Fatalf("upstream URI = %s", got.URL.RequestURI())
	}
	if got.Header.Get("X-Consumer") != "acme" || got.Header.Get("X-Request-Id") == "" || got.Header.Get("X-Debug") != "" || got.Header.Get("X-New") != "v" || got.Header.Get("X-Old") != "" {
		t.Fatalf("upstream headers = %v", got.Header)
	}
	if want := `{"full_name":"Ann","meta":{"by":"alice"}}`; string(gotBody) != want {
		t.Fatalf("upstream body = %s, want %s", gotBody, want)
	}
}

func TestPluginResponse(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		ct, body   string
		wantStatus int
		wantBody   string
		skipped    bool
	}{
		{"json edited", 200, "application/json", `{"id":1,"internal":{"shard":3}}`, 200, `{"api_version":2,"id":1}`, false},
		{"status mapped", 404, "application/problem+json", `{"internal":1}`, 410, `{"api_version":2}`, false},
		{"not json", 200, "text/html", `<p>{"internal":1}</p>`, 200, `<p>{"internal":1}</p>`, true},
		{"broken json", 200, "application/json", `{"internal":`, 200, `{"internal":`, true},
		{"over cap", 200, "application/json", `{"internal":"` + strings.Repeat("x", 300) + `"}`, 200, `{"internal":"` + strings.Repeat("x", 300) + `"}`, true},
		{"scalar root", 200, "application/json", `"just a string"`, 200, `"just a string"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, jsonUpstream(tt.status, tt.ct, tt.body))
			res := h.Run(sdktest.NewRequest("GET", "/v1/users/1", ""))
			if res.Status != tt.wantStatus || string(res.Body) != tt.wantBody {
				t.Fatalf("response %d %s, want %d %s", res.Status, res.Body, tt.wantStatus, tt.wantBody)
			}
			if res.Header.Get("X-Served-For") != "acme" || res.Header.Get("Server") != "" {
				t.Fatalf("response headers = %v", res.Header)
			}
			m, _ := h.Metric("transform_body_skipped_total")
			if (m.Value == 1) != tt.skipped {
				t.Fatalf("skipped metric = %v, want skipped=%v", m.Value, tt.skipped)
			}
			if tt.skipped && (len(res.Logs) == 0 || !strings.Contains(res.Logs[0].Msg, "passed unchanged")) {
				t.Fatalf("no log line for a skipped body: %v", res.Logs)
			}
			if tt.wantBody != tt.body {
				var v any
				if err := json.Unmarshal(res.Body, &v); err != nil {
					t.Fatalf("edited body is not JSON: %v", err)
				}
			}
		})
	}
}

func TestPluginNonJSONRequestBody(t *testing.T) {
	var gotBody []byte
	h := newHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotBody, _ = io.ReadAll(r.Body) }))
	req := sdktest.NewRequest("POST", "/v1/users/1", "a=1&password=x")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res := h.Run(req)
	if !res.UpstreamCalled || string(gotBody) != "a=1&password=x" {
		t.Fatalf("form body changed: %q", gotBody)
	}
	// A GET without a body logs nothing.
	res = h.Run(sdktest.NewRequest("GET", "/v1/users/1", ""))
	for _, l := range res.Logs {
		if strings.Contains(l.Msg, "request body") {
			t.Fatalf("GET without body logged: %v", l)
		}
	}
}

func TestPluginConfigError(t *testing.T) {
	if err := sdktest.ConfigError(t, `{"request":{"path":{"regex":"([","replacement":"/"}}}`); err == nil || !strings.Contains(err.Error(), "request.path.regex") {
		t.Fatalf("ConfigError = %v", err)
	}
}
