package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

var testNow = time.Unix(1_800_000_000, 0)

func claimsAt(extra map[string]any) map[string]any {
	c := map[string]any{"sub": "alice", "iss": "https://idp.test", "aud": "api", "exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Add(-time.Minute).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func mustConfig(t testing.TB, cfg string) *authenticator {
	t.Helper()
	a, err := parseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	a.hostVerify = false
	return a
}

func allKeysConfig(t testing.TB) string {
	k := keysForTest(t)
	return `{"jwks":` + jwksJSON(
		jwkOf(k.rsa, "rsa1", ""),
		jwkOf(k.ec256, "ec256", ""),
		jwkOf(k.ec384, "ec384", ""),
		jwkOf(k.ed, "ed", ""),
	) + `,"keys":[{"kid":"hs","alg":"HS256","secret_base64":"` + b64(k.hmac) + `"},{"kid":"hs384","alg":"HS384","secret_base64":"` + b64(k.hmac) + `"},{"kid":"hs512","alg":"HS512","secret_base64":"` + b64(k.hmac) + `"}],
	"issuers":["https://idp.test"],"audiences":["api","other"],"required_claims":["sub"],"leeway":"30s"}`
}

func TestVerifyAlgorithms(t *testing.T) {
	k := keysForTest(t)
	a := mustConfig(t, allKeysConfig(t))
	tests := []struct {
		alg  string
		priv any
		kid  string
	}{
		{"HS256", k.hmac, "hs"},
		{"HS384", k.hmac, "hs384"},
		{"HS512", k.hmac, "hs512"},
		{"RS256", k.rsa, "rsa1"},
		{"RS384", k.rsa, "rsa1"},
		{"RS512", k.rsa, "rsa1"},
		{"PS256", k.rsa, "rsa1"},
		{"PS384", k.rsa, "rsa1"},
		{"ES256", k.ec256, "ec256"},
		{"ES384", k.ec384, "ec384"},
		{"EdDSA", k.ed, "ed"},
		{"EdDSA", k.ed, ""}, // no kid: every fitting key is tried
	}
	for _, tt := range tests {
		t.Run(tt.alg+"/"+tt.kid, func(t *testing.T) {
			hdr := map[string]any{}
			if tt.kid != "" {
				hdr["kid"] = tt.kid
			}
			tok := signToken(t, tt.alg, tt.priv, hdr, claimsAt(map[string]any{"roles": []string{"admin", "dev"}}))
			id, err := a.verify(tok, testNow)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			vals := map[string]string{}
			for _, v := range id.values {
				vals[v[0]] = v[1]
			}
			if vals["jwt.sub"] != "alice" || vals["jwt.roles"] != "admin dev" || vals["jwt.aud"] != "api" {
				t.Fatalf("values = %v", vals)
			}
			if len(id.forward) != 1 || id.forward[0] != [2]string{"X-Jwt-Sub", "alice"} {
				t.Fatalf("forward = %v", id.forward)
			}
			// Tampered signature fails (bypass the cache with a fresh config).
			fresh := mustConfig(t, allKeysConfig(t))
			bad := tok[:len(tok)-4] + flip(tok[len(tok)-4:])
			if _, err := fresh.verify(bad, testNow); err == nil {
				t.Fatal("tampered token verified")
			}
		})
	}
}

func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestVerifyRefusals(t *testing.T) {
	k := keysForTest(t)
	rsaPEM := pemOf(t, &k.rsa.PublicKey)
	rsaOnly := `{"keys":[{"pem":` + quote(rsaPEM) + `}],"audiences":["api"]}`
	rsaAndHS := `{"keys":[{"pem":` + quote(rsaPEM) + `}],"algorithms":["RS256","HS256"]}`
	ok := claimsAt(nil)
	tests := []struct {
		name string
		cfg  string
		tok  string
		want string
	}{
		{"alg none", rsaOnly, signToken(t, "none", nil, nil, ok) + "sig", "alg none"},
		{"alg none unsigned", rsaOnly, signToken(t, "none", nil, nil, ok), "alg none"},
		{"alg NONE", rsaOnly, signToken(t, "NONE", nil, nil, ok) + "x", "alg none"},
		{"confusion: HS256 with the RSA public key as secret", rsaOnly, signToken(t, "HS256", []byte(rsaPEM), nil, ok), `algorithm 'HS256' not accepted`},
		{"confusion: HS256 allowed but no oct key", rsaAndHS, signToken(t, "HS256", []byte(rsaPEM), nil, ok), "no key for algorithm HS256"},
		{"ES256 token, RSA key", rsaOnly, signToken(t, "ES256", k.ec256, nil, ok), `algorithm 'ES256' not accepted`},
		{"wrong RSA key", rsaOnly, signToken(t, "RS256", k.rsa2, nil, ok), "signature invalid"},
		{"expired", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"exp": testNow.Add(-2 * time.Minute).Unix()})), "token expired"},
		{"nbf future", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"nbf": testNow.Add(2 * time.Minute).Unix()})), "not valid yet"},
		{"iat future", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"iat": testNow.Add(2 * time.Minute).Unix()})), "issued in the future"},
		{"exp missing", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"exp": nil})), `no 'exp'`},
		{"exp string", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"exp": "tomorrow"})), `'exp' is not a number`},
		{"aud mismatch", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"aud": []string{"x", "y"}})), "audience"},
		{"aud missing", rsaOnly, signToken(t, "RS256", k.rsa, nil, claimsAt(map[string]any{"aud": nil})), "audience"},
		{"unknown kid", `{"jwks":` + jwksJSON(jwkOf(k.rsa, "a", "")) + `}`, signToken(t, "RS256", k.rsa, map[string]any{"kid": "b"}, ok), `no key with id 'b'`},
		{"crit", rsaOnly, signToken(t, "RS256", k.rsa, map[string]any{"crit": []string{"exp"}}, ok), "critical header"},
		{"embedded jwk", rsaOnly, signToken(t, "RS256", k.rsa2, map[string]any{"jwk": jwkOf(k.rsa2, "", "")}, ok), "embedded or remote keys"},
		{"jku", rsaOnly, signToken(t, "RS256", k.rsa, map[string]any{"jku": "https://evil.test/jwks"}, ok), "embedded or remote keys"},
		{"two parts", rsaOnly, "abc.def", "malformed token"},
		{"four parts", rsaOnly, "a.b.c.d", "malformed token"},
		{"bad base64", rsaOnly, "a*b.c.d", "malformed token header"},
		{"payload not object", rsaOnly, signToken(t, "RS256", k.rsa, nil, []int{1}), "not a JSON object"},
		{"huge", rsaOnly, strings.Repeat("a", maxTokenLen+1), "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustConfig(t, tt.cfg)
			_, err := a.verify(tt.tok, testNow)
			var te *tokenError
			if !errors.As(err, &te) {
				t.Fatalf("verify err = %v, want a tokenError", err)
			}
			if got := a.challenge(err); !strings.Contains(got, tt.want) || !strings.Contains(got, `error="invalid_token"`) {
				t.Fatalf("challenge = %s, want it to contain %q", got, tt.want)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestVerifyLeewayAndClaims(t *testing.T) {
	k := keysForTest(t)
	a := mustConfig(t, `{"keys":[{"pem":`+quote(pemOf(t, &k.ec256.PublicKey))+`,"kid":"pem"}],"leeway":30,"issuers":["a","b"],"audiences":["api"],"required_claims":["tenant"]}`)
	tests := []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"inside leeway after exp", map[string]any{"iss": "a", "tenant": "t1", "exp": testNow.Add(-20 * time.Second).Unix()}, true},
		{"outside leeway after exp", map[string]any{"iss": "a", "tenant": "t1", "exp": testNow.Add(-40 * time.Second).Unix()}, false},
		{"nbf inside leeway", map[string]any{"iss": "a", "tenant": "t1", "nbf": testNow.Add(20 * time.Second).Unix()}, true},
		{"fractional exp", map[string]any{"iss": "b", "tenant": "t1", "exp": float64(testNow.Unix()) + 100.5}, true},
		{"second issuer", map[string]any{"iss": "b", "tenant": "t1"}, true},
		{"wrong issuer", map[string]any{"iss": "c", "tenant": "t1"}, false},
		{"required claim null", map[string]any{"iss": "a", "tenant": nil}, false},
		{"aud array", map[string]any{"iss": "a", "tenant": 1, "aud": []string{"x", "api"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claimsAt(tt.claims)
			if v, ok := tt.claims["tenant"]; ok && v == nil {
				delete(c, "tenant")
			}
			// A kid the config does not know falls back to the kid-less
			// keys only when no key has that kid; here the key has kid "pem".
			_, err := a.verify(signToken(t, "ES256", k.ec256, map[string]any{"kid": "pem"}, c), testNow)
			if (err == nil) != tt.ok {
				t.Fatalf("verify err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestVerifyKidSelection(t *testing.T) {
	k := keysForTest(t)
	a := mustConfig(t, `{"jwks":`+jwksJSON(jwkOf(k.rsa, "one", "RS256"), jwkOf(k.rsa2, "two", "RS256"))+`}`)
	for _, kid := range []string{"one", "two"} {
		priv := k.rsa
		if kid == "two" {
			priv = k.rsa2
		}
		if _, err := a.verify(signToken(t, "RS256", priv, map[string]any{"kid": kid}, claimsAt(nil)), testNow); err != nil {
			t.Fatalf("kid %s: %v", kid, err)
		}
	}
	// Key "one" pinned to RS256 does not verify PS256 even though it is RSA.
	if _, err := a.verify(signToken(t, "PS256", k.rsa, map[string]any{"kid": "one"}, claimsAt(nil)), testNow); err == nil {
		t.Fatal("PS256 accepted by a key pinned to RS256")
	}
	// Right kid, signed by the other key.
	if _, err := a.verify(signToken(t, "RS256", k.rsa2, map[string]any{"kid": "one"}, claimsAt(nil)), testNow); err == nil {
		t.Fatal("kid one accepted a signature by key two")
	}
	// A bare PEM (no kid) stands in for a token kid nobody declares.
	b := mustConfig(t, `{"keys":[{"pem":`+quote(pemOf(t, &k.rsa.PublicKey))+`}]}`)
	if _, err := b.verify(signToken(t, "RS256", k.rsa, map[string]any{"kid": "idp-2024"}, claimsAt(nil)), testNow); err != nil {
		t.Fatalf("bare PEM with token kid: %v", err)
	}
}

func TestVerifyCache(t *testing.T) {
	k := keysForTest(t)
	a := mustConfig(t, `{"jwks":`+jwksJSON(jwkOf(k.ec256, "e", ""))+`,"cache_size":2}`)
	calls := 0
	a.verifyGuestFn = func(alg string, key *key, data, sig []byte) error {
		calls++
		return verifyNative(alg, key, data, sig)
	}
	tok := func(sub string, exp time.Time) string {
		return signToken(t, "ES256", k.ec256, nil, claimsAt(map[string]any{"sub": sub, "exp": exp.Unix()}))
	}
	t1 := tok("a", testNow.Add(time.Minute))
	for i := 0; i < 3; i++ {
		if _, err := a.verify(t1, testNow); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("signature checked %d times for one token, want 1", calls)
	}
	// After exp the cached entry is not used and the token is refused.
	if _, err := a.verify(t1, testNow.Add(time.Minute)); err != nil {
		t.Fatalf("inside leeway: %v", err) // 60s default leeway: still valid
	}
	if calls != 2 {
		t.Fatalf("calls = %d after expiry of the cache entry, want 2", calls)
	}
	if _, err := a.verify(t1, testNow.Add(2*time.Minute)); err == nil {
		t.Fatal("expired token accepted")
	}
	// Bounded: three tokens in a cache of two.
	a.cache = newTokenCache(2)
	for _, s := range []string{"x", "y", "z"} {
		if _, err := a.verify(tok(s, testNow.Add(time.Hour)), testNow); err != nil {
			t.Fatal(err)
		}
	}
	if a.cache.len() != 2 {
		t.Fatalf("cache holds %d entries, want 2", a.cache.len())
	}
	// A failure is never cached.
	bad := tok("q", testNow.Add(time.Hour))
	bad = bad[:len(bad)-3] + flip(bad[len(bad)-3:])
	for i := 0; i < 2; i++ {
		if _, err := a.verify(bad, testNow); err == nil {
			t.Fatal("bad token accepted")
		}
	}
	// cache_size 0 disables.
	b := mustConfig(t, `{"jwks":`+jwksJSON(jwkOf(k.ec256, "e", ""))+`,"cache_size":0}`)
	if b.cache != nil {
		t.Fatal("cache_size 0 kept a cache")
	}
}

func TestExtract(t *testing.T) {
	a := mustConfig(t, `{"keys":[{"alg":"HS256","secret":"0123456789abcdef0123456789abcdef"}],
		"sources":[{"header":"Authorization","prefix":"Bearer "},{"header":"X-Token"},{"cookie":"session"},{"query":"access_token"}]}`)
	tests := []struct {
		name    string
		headers map[string]string
		query   string
		want    string
		src     string
	}{
		{"bearer", map[string]string{"Authorization": "Bearer abc"}, "", "abc", "Authorization"},
		{"bearer lowercase", map[string]string{"Authorization": "bearer  abc "}, "", "abc", "Authorization"},
		{"basic is ignored", map[string]string{"Authorization": "Basic dXNlcg==", "X-Token": "t2"}, "", "t2", "X-Token"},
		{"cookie", map[string]string{"Cookie": "a=1; session=tok3; b=2"}, "", "tok3", "session"},
		{"query", nil, "x=1&access_token=tok4", "tok4", "access_token"},
		{"none", map[string]string{"Authorization": "Bearer "}, "x=1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			get := func(n string) (string, bool) { v, ok := tt.headers[n]; return v, ok }
			tok, src, err := a.extract(get, func() string { return tt.query })
			if tt.want == "" {
				if !errors.Is(err, errNoToken) {
					t.Fatalf("err = %v, want errNoToken", err)
				}
				if got := a.challenge(err); got != `Bearer realm="wasmgate"` {
					t.Fatalf("challenge = %s", got)
				}
				return
			}
			if err != nil || tok != tt.want || src.Header+src.Cookie+src.Query != tt.src {
				t.Fatalf("extract = %q, %+v, %v", tok, src, err)
			}
		})
	}
}

func TestStripHelpers(t *testing.T) {
	cookies := []struct{ in, name, want string }{
		{"a=1; session=x; b=2", "session", "a=1; b=2"},
		{"session=x", "session", ""},
		{"a=1;b=2", "c", "a=1; b=2"},
	}
	for _, c := range cookies {
		if got := removeCookie(c.in, c.name); got != c.want {
			t.Errorf("removeCookie(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	uris := []struct{ in, name, want string }{
		{"/p?access_token=x&a=1", "access_token", "/p?a=1"},
		{"/p?a=%20&access%5Ftoken=x", "access_token", "/p?a=%20"},
		{"/p?access_token=x", "access_token", "/p"},
		{"/p", "access_token", "/p"},
	}
	for _, u := range uris {
		if got := sdk.RemoveQueryParam(u.in, u.name); got != u.want {
			t.Errorf("sdk.RemoveQueryParam(%q) = %q, want %q", u.in, got, u.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	k := keysForTest(t)
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"empty", ``, "no keys"},
		{"unknown field", `{"jwks_url":"x"}`, `unknown field "jwks_url"`},
		{"jwks_file not inlined", `{"jwks_file":"keys.json"}`, `jwks_file "keys.json": the proxy did not hand`},
		{"bad jwks from file", `{"jwks_file":"keys.json","jwks":"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}"}`, `jwks_file "keys.json"`},
		{"small rsa", `{"jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}}`, "too small"},
		{"bad curve", `{"jwks":{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}}`, `unsupported EC curve "P-521"`},
		{"point off curve", `{"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}}`, "invalid EC point"},
		{"jwk alg mismatch", `{"jwks":` + jwksJSON(jwkOf(k.ec256, "e", "RS256")) + `}`, "cannot verify alg RS256"},
		{"private pem", `{"keys":[{"pem":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}]}`, "not a public key"},
		{"pem and secret", `{"keys":[{"pem":"x","secret":"y","alg":"HS256"}]}`, "exactly one of pem, secret"},
		{"secret without alg", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef"}]}`, "needs alg HS256"},
		{"short secret", `{"keys":[{"secret":"short","alg":"HS256"}]}`, "at least 32 bytes"},
		{"pem alg mismatch", `{"keys":[{"pem":` + quote(pemOf(t, &k.rsa.PublicKey)) + `,"alg":"ES256"}]}`, "cannot verify ES256"},
		{"unknown algorithm", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"algorithms":["none"]}`, `unsupported algorithm "none"`},
		{"bad leeway", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"leeway":"soon"}`, "leeway"},
		{"source two kinds", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"sources":[{"header":"a","cookie":"b"}]}`, "sources[0]: set exactly one"},
		{"bad forward header", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"forward_claims":{"sub":"x y"}}`, `forward_claims["sub"]`},
		{"bad verify", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"verify":"gpu"}`, `verify: "gpu"`},
		{"bad cache", `{"keys":[{"secret":"0123456789abcdef0123456789abcdef","alg":"HS256"}],"cache_size":-1}`, "cache_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "jwt-auth: config: ") {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestConfigPEMBundleAsJWKS(t *testing.T) {
	k := keysForTest(t)
	// jwks_file pointing at a PEM bundle arrives as a string in jwks.
	a := mustConfig(t, `{"jwks":`+quote(pemOf(t, &k.rsa.PublicKey)+pemOf(t, &k.ec256.PublicKey))+`}`)
	if len(a.keys) != 2 {
		t.Fatalf("keys = %d, want 2", len(a.keys))
	}
	for _, c := range []struct {
		alg  string
		priv any
	}{{"RS256", k.rsa}, {"ES256", k.ec256}} {
		if _, err := a.verify(signToken(t, c.alg, c.priv, nil, claimsAt(nil)), testNow); err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
	}
	if _, err := parseConfig([]byte(`{"jwks":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}`)); err == nil || !strings.Contains(err.Error(), "jwks (PEM)") {
		t.Fatalf("bad PEM bundle: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	k := keysForTest(t)
	a := mustConfig(t, `{"jwks":`+quote(jwksJSON(jwkOf(k.rsa, "r", ""), jwkOf(k.ec256, "e", "ES256")))+`}`)
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256"} {
		if !a.allowed[alg] {
			t.Errorf("default algorithms miss %s", alg)
		}
	}
	for _, alg := range []string{"HS256", "ES384", "EdDSA", "none"} {
		if a.allowed[alg] {
			t.Errorf("default algorithms allow %s with no key for it", alg)
		}
	}
	if a.rules.leeway != defaultLeeway || !a.rules.requireExp || a.realm != "wasmgate" || a.cache == nil || a.cache.max != defaultCacheSize {
		t.Fatalf("defaults not applied: %+v", a)
	}
	if len(a.forward) != 1 || a.forward[0] != [2]string{"sub", "X-Jwt-Sub"} {
		t.Fatalf("forward = %v", a.forward)
	}
}
