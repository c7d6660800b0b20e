package main

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

const cfg = `{"set":{"source":"gateway","tier":2},"remove":["is_admin"]}`

func TestJSONBodyRewrite(t *testing.T) {
	req := sdktest.NewRequest("POST", "/orders", `{"item":"book","is_admin":true,"tier":9}`)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	res := sdktest.Run(t, cfg, req)
	if res.Action != sdk.Continue {
		t.Fatalf("action %v, want continue", res.Action)
	}
	var got map[string]any
	if err := json.Unmarshal(res.RequestBody, &got); err != nil {
		t.Fatalf("upstream body %q: %v", res.RequestBody, err)
	}
	want := map[string]any{"item": "book", "source": "gateway", "tier": float64(2)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("upstream body = %v, want %v", got, want)
	}
	if res.Request.ContentLength != int64(len(res.RequestBody)) {
		t.Errorf("content-length %d for a %d byte body", res.Request.ContentLength, len(res.RequestBody))
	}
}

func TestJSONBodyPassesAndRejects(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		wantStatus        int
		wantBody          string
	}{
		{"not json", "text/plain", `{"is_admin":true}`, 200, `{"is_admin":true}`},
		{"malformed", "application/json", `{"a":`, 400, ""},
		{"array", "application/json", `[1,2]`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sdktest.NewRequest("POST", "/", tt.body)
			req.Header.Set("Content-Type", tt.ctype)
			res := sdktest.Run(t, cfg, req)
			if res.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", res.Status, tt.wantStatus, res.Body)
			}
			if tt.wantStatus == 200 && string(res.RequestBody) != tt.wantBody {
				t.Errorf("upstream body %q, want it untouched %q", res.RequestBody, tt.wantBody)
			}
			if tt.wantStatus == 400 && res.UpstreamCalled {
				t.Errorf("malformed body reached the upstream")
			}
		})
	}
}

func TestJSONBodyConfig(t *testing.T) {
	if sdktest.ConfigError(t, `{}`) == nil {
		t.Error("empty config accepted")
	}
	if sdktest.ConfigError(t, `{"set":{"a":}}`) == nil {
		t.Error("malformed config accepted")
	}
}
