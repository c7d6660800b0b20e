package main

import (
	"encoding/json"
	"testing"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func TestDenyPath(t *testing.T) {
	const cfg = `{"prefixes":["/admin","/internal/"],"message":"no entry"}`
	tests := []struct {
		target string
		denied bool
	}{
		{"/", false},
		{"/admin", true},
		{"/admin/users?id=1", true},
		{"/administrator", false},
		{"/internal/metrics", true},
		{"/internal", false},
		{"/public/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			res := sdktest.Run(t, cfg, sdktest.NewRequest("GET", tt.target, ""))
			if !tt.denied {
				if res.Action != sdk.Continue || !res.UpstreamCalled {
					t.Fatalf("action %v, want continue", res.Action)
				}
				return
			}
			if res.Action != sdk.Stop || res.UpstreamCalled {
				t.Fatalf("action %v upstream %v, want stop before the upstream", res.Action, res.UpstreamCalled)
			}
			if res.Status != 403 || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d content-type %q, want 403 application/json", res.Status, res.Header.Get("Content-Type"))
			}
			var body struct{ Error, Path string }
			if err := json.Unmarshal(res.Body, &body); err != nil {
				t.Fatalf("body %q: %v", res.Body, err)
			}
			if body.Error != "no entry" || body.Path == "" {
				t.Errorf("body = %+v", body)
			}
		})
	}
}

func TestDenyPathConfig(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"prefixes":["admin"]}`, `{"prefixes":["/a"],"status":200}`} {
		if sdktest.ConfigError(t, cfg) == nil {
			t.Errorf("config %s accepted", cfg)
		}
	}
	res := sdktest.Run(t, `{"prefixes":["/x"],"status":451}`, sdktest.NewRequest("GET", "/x", ""))
	if res.Status != 451 {
		t.Errorf("status %d, want the configured 451", res.Status)
	}
}
