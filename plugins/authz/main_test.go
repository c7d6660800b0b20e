package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

const pluginCfg = `{"rules":[
	{"name":"no-delete","action":"deny","methods":["DELETE"]},
	{"name":"admins","action":"allow","roles":["admin"]},
	{"name":"web-to-api","action":"allow","peer_ids":["spiffe://mesh.local/ns/shop/sa/web"],"path_prefixes":["/api/"]},
	{"name":"gold","action":"allow","consumers":["*"],"values":{"tier":["gold"]},"paths":["/v1/**"]}
]}`

func TestPlugin(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		values map[string]string
		props  map[string]string
		status int
		rule   string
		reason string
	}{
		{"admin", "GET", "/anything", map[string]string{"jwt.sub": "root", "jwt.roles": "admin"}, nil, 200, "", ""},
		{"admin delete", "DELETE", "/anything", map[string]string{"jwt.roles": "admin"}, nil, 403, "no-delete", "denied by rule no-delete"},
		{"mesh peer", "POST", "/api/orders", nil, map[string]string{sdk.PropPeerID: "spiffe://mesh.local/ns/shop/sa/web"}, 200, "", ""},
		{"wrong peer", "POST", "/api/orders", nil, map[string]string{sdk.PropPeerID: "spiffe://mesh.local/ns/shop/sa/batch"}, 403, "", "no rule allows this request"},
		{"gold consumer", "GET", "/v1/x", map[string]string{"consumer": "acme", "tier": "gold"}, nil, 200, "", ""},
		{"silver consumer", "GET", "/v1/x", map[string]string{"consumer": "acme", "tier": "silver"}, nil, 403, "", "no rule allows this request"},
		{"anonymous", "GET", "/v1/x", nil, nil, 403, "", "no rule allows this request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sdktest.New(t)
			h.Values = tt.values
			h.Properties = tt.props
			if err := h.Configure(pluginCfg); err != nil {
				t.Fatal(err)
			}
			req := sdktest.NewRequest(tt.method, tt.path, "")
			res := h.Run(req)
			if res.Status != tt.status || res.UpstreamCalled != (tt.status == 200) {
				t.Fatalf("status %d upstream %v body %s", res.Status, res.UpstreamCalled, res.Body)
			}
			if tt.status != 200 {
				var body struct {
					Status int    `json:"status"`
					Error  string `json:"error"`
					Reason string `json:"reason"`
					Rule   string `json:"rule"`
				}
				if err := json.Unmarshal(res.Body, &body); err != nil || body.Status != 403 || body.Reason != tt.reason || body.Rule != tt.rule || body.Error != "forbidden" {
					t.Fatalf("body %s", res.Body)
				}
			}
			if m, _ := h.Metric("authz_denied_total"); m.Value != map[bool]float64{true: 0, false: 1}[tt.status == 200] {
				t.Fatalf("authz_denied_total = %v", m.Value)
			}
		})
	}
}

func TestPluginDryRun(t *testing.T) {
	h := sdktest.New(t)
	if err := h.Configure(`{"dry_run":true,"rules":[{"name":"admins","action":"allow","roles":["admin"]}]}`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		res := h.Run(sdktest.NewRequest("DELETE", "/v1/users/1", ""))
		if !res.UpstreamCalled || res.Status != 200 {
			t.Fatalf("dry run blocked: %d", res.Status)
		}
	}
	if m, ok := h.Metric("authz_dry_run_denied_total"); !ok || m.Value != 3 {
		t.Fatalf("dry run metric = %+v %v", m, ok)
	}
	if m, _ := h.Metric("authz_denied_total"); m.Value != 0 {
		t.Fatalf("denied counted in dry run: %v", m.Value)
	}
	logs := h.Logs()
	if len(logs) == 0 || !strings.Contains(logs[0].Msg, "would deny DELETE /v1/users/1: no rule allows this request") {
		t.Fatalf("logs = %v", logs)
	}
}

func TestPluginConfigError(t *testing.T) {
	if err := sdktest.ConfigError(t, `{"rules":[{"action":"maybe"}]}`); err == nil || !strings.Contains(err.Error(), "rules[0].action") {
		t.Fatalf("ConfigError = %v", err)
	}
}
