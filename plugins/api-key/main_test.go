package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/plugins/keyhash"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

var pluginCfg = `{"keys":[
	{"hash":"` + keyhash.Hash("alice-key") + `","consumer":"alice","tier":"gold"},
	{"hash":"` + keyhash.Hash("bob-key") + `","consumer":"bob"}],
	"query":"api_key","tier_header":"x-tier"}`

func TestPlugin(t *testing.T) {
	tests := []struct {
		name     string
		target   string
		header   string
		status   int
		consumer string
		tier     string
		reason   string
	}{
		{"header key", "/v1/x", "alice-key", 200, "alice", "gold", ""},
		{"query key", "/v1/x?api_key=bob-key&y=2", "", 200, "bob", "", ""},
		{"missing", "/v1/x", "", 401, "", "", "missing API key"},
		{"unknown", "/v1/x", "mallory-key", 401, "", "", "invalid API key"},
		{"hash is not a key", "/v1/x", keyhash.Hash("alice-key"), 401, "", "", "invalid API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sdktest.NewRequest("GET", tt.target, "")
			if tt.header != "" {
				req.Header.Set("X-Api-Key", tt.header)
			}
			req.Header.Set("X-Consumer", "forged")
			req.Header.Set("X-Tier", "forged")
			res := sdktest.Run(t, pluginCfg, req)
			if res.Status != tt.status {
				t.Fatalf("status %d, want %d (body %s)", res.Status, tt.status, res.Body)
			}
			if tt.status != 200 {
				var body struct {
					Status int    `json:"status"`
					Reason string `json:"reason"`
				}
				if err := json.Unmarshal(res.Body, &body); err != nil || body.Reason != tt.reason || body.Status != 401 {
					t.Fatalf("body %s", res.Body)
				}
				if res.UpstreamCalled || res.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("denied request reached upstream or wrong content type")
				}
				return
			}
			up := res.Request
			if got := up.Header.Values("X-Consumer"); len(got) != 1 || got[0] != tt.consumer {
				t.Fatalf("X-Consumer = %v", got)
			}
			if got := up.Header.Get("X-Tier"); got != tt.tier {
				t.Fatalf("X-Tier = %q, want %q", got, tt.tier)
			}
			if res.Values["consumer"] != tt.consumer || res.Values["tier"] != tt.tier {
				t.Fatalf("values = %v", res.Values)
			}
			if up.Header.Get("X-Api-Key") != "" || strings.Contains(up.URL.RawQuery, "api_key") {
				t.Fatalf("key not stripped: %v %q", up.Header, up.URL.RawQuery)
			}
		})
	}
}

func TestPluginKeepKeyAndOptional(t *testing.T) {
	cfg := `{"keys":[{"hash":"` + keyhash.Hash("k1") + `","consumer":"c1"}],"strip_key":false,"optional":true,"consumer_header":"-"}`
	req := sdktest.NewRequest("GET", "/", "")
	req.Header.Set("X-Api-Key", "k1")
	res := sdktest.Run(t, cfg, req)
	if res.Request.Header.Get("X-Api-Key") != "k1" || res.Request.Header.Get("X-Consumer") != "" || res.Values["consumer"] != "c1" {
		t.Fatalf("upstream headers %v values %v", res.Request.Header, res.Values)
	}
	if res := sdktest.Run(t, cfg, sdktest.NewRequest("GET", "/", "")); !res.UpstreamCalled || len(res.Values) != 0 {
		t.Fatalf("optional anonymous: %d %v", res.Status, res.Values)
	}
	bad := sdktest.NewRequest("GET", "/", "")
	bad.Header.Set("X-Api-Key", "nope")
	if res := sdktest.Run(t, cfg, bad); res.Status != 401 {
		t.Fatalf("optional with unknown key: %d", res.Status)
	}
}

func TestPluginConfigError(t *testing.T) {
	err := sdktest.ConfigError(t, `{"keys":[{"hash":"plaintext","consumer":"a"}]}`)
	if err == nil || !strings.Contains(err.Error(), "keys[0].hash") {
		t.Fatalf("ConfigError = %v", err)
	}
}
