package main

import (
	"testing"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func TestPeerIdentity(t *testing.T) {
	const orders = "spiffe://example.org/ns/shop/sa/orders"
	tests := []struct {
		name       string
		cfg        string
		peer       string // "" means no mTLS peer
		wantStatus int
		wantHeader string
	}{
		{"adds header", `{}`, orders, 200, orders},
		{"no peer passes", `{}`, "", 200, ""},
		{"no peer required", `{"require":true}`, "", 401, ""},
		{"trust domain ok", `{"trust_domain":"example.org","header":"X-Caller"}`, orders, 200, orders},
		{"foreign domain", `{"trust_domain":"other.org"}`, orders, 403, ""},
		{"no peer with trust domain", `{"trust_domain":"example.org"}`, "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sdktest.New(t)
			if tt.peer != "" {
				h.Properties = map[string]string{sdk.PropPeerID: tt.peer}
			}
			if err := h.Configure(tt.cfg); err != nil {
				t.Fatal(err)
			}
			req := sdktest.NewRequest("GET", "/orders", "")
			req.Header.Set("X-Peer-Identity", "spiffe://evil/forged")
			req.Header.Set("X-Caller", "spiffe://evil/forged")
			res := h.Run(req)
			if res.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d", res.Status, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			name := "X-Peer-Identity"
			if tt.name == "trust domain ok" {
				name = "X-Caller"
			}
			if got := res.Request.Header.Values(name); tt.wantHeader == "" && len(got) != 0 ||
				tt.wantHeader != "" && (len(got) != 1 || got[0] != tt.wantHeader) {
				t.Errorf("upstream %s = %q, want %q (forged value removed)", name, got, tt.wantHeader)
			}
		})
	}
}

func TestPeerIdentityConfig(t *testing.T) {
	for _, cfg := range []string{`{"header":""}`, `{"trust_domain":"spiffe://x"}`, `{"unknown":1}`} {
		if sdktest.ConfigError(t, cfg) == nil {
			t.Errorf("config %s accepted", cfg)
		}
	}
}
