package main

import (
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func TestAddHeader(t *testing.T) {
	tests := []struct {
		name     string
		cfg      string
		wantReq  map[string]string
		wantResp map[string]string
	}{
		{"request only", `{"request":{"X-Hello":"world"}}`, map[string]string{"X-Hello": "world"}, map[string]string{"X-Served-By": ""}},
		{"both", `{"request":{"X-A":"1","X-B":"2"},"response":{"X-Served-By":"wasmgate"}}`,
			map[string]string{"X-A": "1", "X-B": "2"}, map[string]string{"X-Served-By": "wasmgate"}},
		{"replaces client value", `{"request":{"X-User":"anonymous"}}`, map[string]string{"X-User": "anonymous"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sdktest.NewRequest("GET", "/hello", "")
			req.Header.Set("X-User", "admin")
			res := sdktest.Run(t, tt.cfg, req)
			if res.Action != sdk.Continue || res.Status != 200 {
				t.Fatalf("action %v status %d, want continue 200", res.Action, res.Status)
			}
			for k, v := range tt.wantReq {
				if got := res.Request.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("upstream header %s = %q, want [%q]", k, got, v)
				}
			}
			for k, v := range tt.wantResp {
				if got := res.Header.Get(k); got != v {
					t.Errorf("response header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestAddHeaderConfigErrors(t *testing.T) {
	for _, cfg := range []string{``, `{}`, `{"request":{"X":1}}`, `{"requests":{"X":"1"}}`} {
		err := sdktest.ConfigError(t, cfg)
		if err == nil {
			t.Errorf("config %q accepted, want an error", cfg)
			continue
		}
		if cfg == `{}` && !strings.Contains(err.Error(), "at least one header") {
			t.Errorf("config %q: error %q does not explain", cfg, err)
		}
	}
}
