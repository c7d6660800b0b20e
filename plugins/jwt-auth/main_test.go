package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func liveClaims(extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"sub": "alice", "scope": "read write", "exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func pluginConfig(t *testing.T, extra string) string {
	k := keysForTest(t)
	cfg := `{"jwks":` + jwksJSON(jwkOf(k.rsa, "r1", "RS256"), jwkOf(k.ec256, "e1", "ES256")) +
		`,"forward_claims":{"sub":"x-jwt-sub","scope":"x-jwt-scope"}`
	if extra != "" {
		cfg += "," + extra
	}
	return cfg + "}"
}

func TestPluginAllowsValidToken(t *testing.T) {
	k := keysForTest(t)
	for _, verify := range []string{"host", "guest"} {
		for _, tc := range []struct {
			alg  string
			priv any
			kid  string
		}{{"RS256", k.rsa, "r1"}, {"ES256", k.ec256, "e1"}} {
			t.Run(verify+"/"+tc.alg, func(t *testing.T) {
				tok := signToken(t, tc.alg, tc.priv, map[string]any{"kid": tc.kid}, liveClaims(nil))
				req := sdktest.NewRequest("GET", "/v1/x", "")
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("X-Jwt-Sub", "mallory") // forged: must be replaced
				res := sdktest.Run(t, pluginConfig(t, `"verify":"`+verify+`"`), req)
				if !res.UpstreamCalled || res.Status != 200 {
					t.Fatalf("status %d, upstream %v, body %s", res.Status, res.UpstreamCalled, res.Body)
				}
				if got := res.Request.Header.Values("X-Jwt-Sub"); len(got) != 1 || got[0] != "alice" {
					t.Fatalf("X-Jwt-Sub upstream = %v", got)
				}
				if got := res.Request.Header.Get("X-Jwt-Scope"); got != "read write" {
					t.Fatalf("X-Jwt-Scope = %q", got)
				}
				if res.Values["jwt.sub"] != "alice" || res.Values["jwt.scope"] != "read write" {
					t.Fatalf("values = %v", res.Values)
				}
				if res.Request.Header.Get("Authorization") == "" {
					t.Fatal("token stripped without strip_token")
				}
			})
		}
	}
}

func TestPluginRefuses(t *testing.T) {
	k := keysForTest(t)
	expired := signToken(t, "RS256", k.rsa, map[string]any{"kid": "r1"}, liveClaims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	wrongKey := signToken(t, "RS256", k.rsa2, map[string]any{"kid": "r1"}, liveClaims(nil))
	none := signToken(t, "none", nil, nil, liveClaims(nil)) + "x"
	tests := []struct {
		name, auth, wantChallenge, wantReason string
	}{
		{"missing", "", `Bearer realm="wasmgate"`, "no token"},
		{"expired", "Bearer " + expired, `Bearer realm="wasmgate", error="invalid_token", error_description="token expired"`, "token expired"},
		{"wrong key", "Bearer " + wrongKey, `error_description="signature invalid"`, "signature invalid"},
		{"alg none", "Bearer " + none, `error_description="unsigned tokens (alg none) are not accepted"`, "alg none"},
		{"garbage", "Bearer abc", `error_description="malformed token"`, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sdktest.NewRequest("GET", "/v1/x", "")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			h := sdktest.New(t)
			if err := h.Configure(pluginConfig(t, "")); err != nil {
				t.Fatal(err)
			}
			res := h.Run(req)
			if res.UpstreamCalled || res.Status != http.StatusUnauthorized {
				t.Fatalf("status %d upstream %v", res.Status, res.UpstreamCalled)
			}
			if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.wantChallenge) {
				t.Fatalf("WWW-Authenticate = %s, want %s", got, tt.wantChallenge)
			}
			var body struct {
				Status int    `json:"status"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal(res.Body, &body); err != nil || body.Status != 401 || !strings.Contains(body.Reason, tt.wantReason) {
				t.Fatalf("body %s (%v)", res.Body, err)
			}
			if m, ok := h.Metric("jwt_auth_denied_total"); !ok || m.Value != 1 {
				t.Fatalf("denied metric = %+v %v", m, ok)
			}
		})
	}
}

func TestPluginSourcesAndStrip(t *testing.T) {
	k := keysForTest(t)
	tok := signToken(t, "ES256", k.ec256, map[string]any{"kid": "e1"}, liveClaims(nil))
	cfg := pluginConfig(t, `"strip_token":true,"sources":[{"header":"Authorization","prefix":"Bearer "},{"cookie":"jwt"},{"query":"access_token"}]`)
	tests := []struct {
		name  string
		setup func(r *http.Request)
		check func(t *testing.T, up *http.Request)
	}{
		{"header", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, func(t *testing.T, up *http.Request) {
			if up.Header.Get("Authorization") != "" {
				t.Fatal("Authorization not stripped")
			}
		}},
		{"cookie", func(r *http.Request) { r.Header.Set("Cookie", "a=1; jwt="+tok+"; b=2") }, func(t *testing.T, up *http.Request) {
			if got := up.Header.Get("Cookie"); got != "a=1; b=2" {
				t.Fatalf("Cookie upstream = %q", got)
			}
		}},
		{"query", func(r *http.Request) { r.URL.RawQuery = "x=1&access_token=" + tok; r.RequestURI = "" }, func(t *testing.T, up *http.Request) {
			if got := up.URL.RawQuery; got != "x=1" {
				t.Fatalf("query upstream = %q", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sdktest.NewRequest("GET", "/p", "")
			tt.setup(req)
			res := sdktest.Run(t, cfg, req)
			if !res.UpstreamCalled || res.Request.Header.Get("X-Jwt-Sub") != "alice" {
				t.Fatalf("status %d body %s", res.Status, res.Body)
			}
			tt.check(t, res.Request)
		})
	}
}

func TestPluginOptionalAndCache(t *testing.T) {
	k := keysForTest(t)
	h := sdktest.New(t)
	if err := h.Configure(pluginConfig(t, `"optional":true`)); err != nil {
		t.Fatal(err)
	}
	anon := sdktest.NewRequest("GET", "/p", "")
	anon.Header.Set("X-Jwt-Sub", "forged")
	res := h.Run(anon)
	if !res.UpstreamCalled || res.Request.Header.Get("X-Jwt-Sub") != "" || len(res.Values) != 0 {
		t.Fatalf("optional anonymous: upstream %v sub %q values %v", res.UpstreamCalled, res.Request.Header.Get("X-Jwt-Sub"), res.Values)
	}
	// A token without the scope claim: its forwarded header is removed,
	// also on the cached second run.
	tok := signToken(t, "RS256", k.rsa, map[string]any{"kid": "r1"}, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	for i := 0; i < 2; i++ {
		req := sdktest.NewRequest("GET", "/p", "")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Jwt-Scope", "admin")
		res := h.Run(req)
		if res.Values["jwt.sub"] != "alice" || res.Request.Header.Get("X-Jwt-Scope") != "" {
			t.Fatalf("run %d: values %v scope %q", i, res.Values, res.Request.Header.Get("X-Jwt-Scope"))
		}
	}
	bad := sdktest.NewRequest("GET", "/p", "")
	bad.Header.Set("Authorization", "Bearer x.y.z")
	if res := h.Run(bad); res.Status != 401 {
		t.Fatalf("optional with a bad token: status %d", res.Status)
	}
}

func TestPluginConfigError(t *testing.T) {
	err := sdktest.ConfigError(t, `{"jwks_file":"/etc/keys.json"}`)
	if err == nil || !strings.Contains(err.Error(), `jwks_file "/etc/keys.json"`) {
		t.Fatalf("ConfigError = %v", err)
	}
}
