package main

import (
	"testing"
	"time"
)

// BenchmarkVerifyNative measures token verification in native Go: "cold"
// with the cache disabled (parse, signature, claims every time) and
// "cached" (a repeated token). Compare with BenchmarkJWTWasm in
// integration_test.go for the same work inside the Wasm plugin.
func BenchmarkVerifyNative(b *testing.B) {
	k := keysForTest(b)
	now := time.Now()
	claims := map[string]any{"sub": "alice", "scope": "read write", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for _, c := range []struct {
		alg  string
		priv any
	}{{"RS256", k.rsa}, {"ES256", k.ec256}} {
		jwks := jwksJSON(jwkOf(c.priv, "k", c.alg))
		tok := signToken(b, c.alg, c.priv, map[string]any{"kid": "k"}, claims)
		for _, mode := range []struct{ name, cache string }{{"cold", "0"}, {"cached", "1024"}} {
			b.Run(c.alg+"/"+mode.name, func(b *testing.B) {
				a, err := parseConfig([]byte(`{"verify":"guest","cache_size":` + mode.cache + `,"jwks":` + jwks + `}`))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := a.verify(tok, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
