package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

// Defaults of the jwt-auth config.
const (
	defaultLeeway    = 60 * time.Second
	defaultCacheSize = 1024
	defaultRealm     = "wasmgate"
)

// Config is the jwt-auth plugin config (JSON; YAML in the proxy config).
type Config struct {
	// JWKS is an inline JWK Set: a JSON object, or a string holding one.
	JWKS json.RawMessage `json:"jwks"`
	// JWKSFile names a JWKS file. The proxy reads it and hands its content
	// in JWKS (the plugin never touches the file system); it is kept here
	// only so error messages can name it.
	JWKSFile string `json:"jwks_file"`
	// Keys are PEM public keys or HMAC secrets.
	Keys []KeyConfig `json:"keys"`
	// Algorithms limits the accepted "alg" values. Default: every algorithm
	// that one of the configured keys can verify.
	Algorithms []string `json:"algorithms"`
	// Issuers, when set, must contain the token's "iss".
	Issuers []string `json:"issuers"`
	// Audiences, when set, must intersect the token's "aud".
	Audiences []string `json:"audiences"`
	// Leeway is the clock skew allowed on exp/nbf/iat ("30s" or seconds). Default 60s.
	Leeway duration `json:"leeway"`
	// RequireExp refuses tokens without "exp". Default true.
	RequireExp *bool `json:"require_exp"`
	// RequiredClaims must be present (and not null).
	RequiredClaims []string `json:"required_claims"`
	// Sources say where the token is read, tried in order. Default:
	// the Authorization header with prefix "Bearer ".
	Sources []Source `json:"sources"`
	// ForwardClaims maps a claim to the request header that carries it
	// upstream. Default {"sub": "x-jwt-sub"}. Incoming headers of these
	// names are always removed first, so clients cannot forge them.
	ForwardClaims map[string]string `json:"forward_claims"`
	// StripToken removes the token from the request before it goes upstream.
	StripToken bool `json:"strip_token"`
	// Optional lets requests without any token through unauthenticated
	// (a present but invalid token is still refused).
	Optional bool `json:"optional"`
	// CacheSize is the number of verified tokens kept per instance.
	// Default 1024; 0 disables the cache.
	CacheSize *int `json:"cache_size"`
	// Verify selects where signature math runs: "host" (native, through
	// wasmgate.verify_signature; default) or "guest" (Go crypto in Wasm).
	// HMAC always runs in the guest.
	Verify string `json:"verify"`
	// Realm goes into the WWW-Authenticate challenge. Default "wasmgate".
	Realm string `json:"realm"`
}

// KeyConfig is one configured key: PEM, secret or secret_base64.
type KeyConfig struct {
	// Kid matches the token header "kid". Optional.
	Kid string `json:"kid"`
	// Alg restricts the key to one algorithm. Required for secrets.
	Alg string `json:"alg"`
	// PEM is a public key, RSA public key or certificate in PEM.
	PEM string `json:"pem"`
	// Secret is an HMAC secret as text.
	Secret string `json:"secret"`
	// SecretBase64 is an HMAC secret in base64 (standard or URL alphabet).
	SecretBase64 string `json:"secret_base64"`
}

// Source is one place a token is read from; exactly one of Header, Cookie
// and Query is set.
type Source struct {
	// Header names a request header.
	Header string `json:"header"`
	// Prefix is stripped from the header value (case-insensitive), e.g.
	// "Bearer ". A header value without the prefix is ignored.
	Prefix string `json:"prefix"`
	// Cookie names a cookie.
	Cookie string `json:"cookie"`
	// Query names a query parameter.
	Query string `json:"query"`
}

// duration reads "30s" or a number of seconds.
type duration struct {
	d   time.Duration
	set bool
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("leeway: %w", err)
		}
		d.d, d.set = v, true
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("leeway: want a duration like \"30s\" or a number of seconds, got %s", b)
	}
	d.d, d.set = time.Duration(f*float64(time.Second)), true
	return nil
}

// authenticator is a compiled config: everything a request needs.
type authenticator struct {
	keys          []*key
	allowed       map[string]bool
	rules         claimRules
	sources       []Source
	forward       [][2]string // claim, header
	stripToken    bool
	optional      bool
	realm         string
	cache         *tokenCache
	hostVerify    bool
	verifyHostFn  func(alg string, k *key, data, sig []byte) error
	verifyGuestFn func(alg string, k *key, data, sig []byte) error
}

// parseConfig decodes and validates a config, joining every problem with
// its field path.
func parseConfig(data []byte) (*authenticator, error) {
	var c Config
	if err := sdk.DecodeConfig(data, &c); err != nil {
		return nil, fmt.Errorf("jwt-auth: %w", err)
	}
	a, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("jwt-auth: config: %w", err)
	}
	return a, nil
}

func (c *Config) compile() (*authenticator, error) {
	var errs []error
	a := &authenticator{
		allowed:       map[string]bool{},
		stripToken:    c.StripToken,
		optional:      c.Optional,
		realm:         c.Realm,
		verifyGuestFn: verifyNative,
	}
	// Keys.
	jwks := bytes.TrimSpace(c.JWKS)
	if len(jwks) > 0 && jwks[0] == '"' {
		var s string
		if err := json.Unmarshal(jwks, &s); err != nil {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
		jwks = []byte(strings.TrimSpace(s))
	}
	switch {
	case bytes.HasPrefix(jwks, []byte("-----BEGIN")):
		// A PEM file handed over through jwks_file.
		keys, err := parsePEMKeys(jwks)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwks (PEM): %w", err))
		}
		a.keys = append(a.keys, keys...)
	case len(jwks) > 0 && !bytes.Equal(jwks, []byte("null")):
		keys, err := parseJWKS(jwks)
		if err != nil {
			where := "jwks"
			if c.JWKSFile != "" {
				where = "jwks_file " + strconv.Quote(c.JWKSFile)
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		a.keys = append(a.keys, keys...)
	case c.JWKSFile != "":
		errs = append(errs, fmt.Errorf("jwks_file %q: the proxy did not hand its content to the plugin (it must inline the file as \"jwks\")", c.JWKSFile))
	}
	for i, kc := range c.Keys {
		k, err := kc.toKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		a.keys = append(a.keys, k)
	}
	if len(a.keys) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no keys: set jwks, jwks_file or keys"))
	}
	// Algorithms.
	if len(c.Algorithms) > 0 {
		for i, name := range c.Algorithms {
			if _, ok := algorithms[name]; !ok {
				errs = append(errs, fmt.Errorf("algorithms[%d]: unsupported algorithm %q (supported: %s)", i, name, strings.Join(algNames(), ", ")))
				continue
			}
			a.allowed[name] = true
		}
	} else {
		for name, al := range algorithms {
			for _, k := range a.keys {
				if al.fits(k) && (k.alg == "" || k.alg == name) {
					a.allowed[name] = true
				}
			}
		}
	}
	// Claims.
	a.rules = claimRules{issuers: c.Issuers, audiences: c.Audiences, leeway: defaultLeeway, requireExp: true, required: c.RequiredClaims}
	if c.Leeway.set {
		if c.Leeway.d < 0 || c.Leeway.d > time.Hour {
			errs = append(errs, fmt.Errorf("leeway: %s out of range (0 to 1h)", c.Leeway.d))
		}
		a.rules.leeway = c.Leeway.d
	}
	if c.RequireExp != nil {
		a.rules.requireExp = *c.RequireExp
	}
	for i, n := range c.RequiredClaims {
		if n == "" {
			errs = append(errs, fmt.Errorf("required_claims[%d]: empty claim name", i))
		}
	}
	// Sources.
	a.sources = c.Sources
	if len(a.sources) == 0 {
		a.sources = []Source{{Header: "Authorization", Prefix: "Bearer "}}
	}
	for i, s := range a.sources {
		n := 0
		for _, v := range []string{s.Header, s.Cookie, s.Query} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("sources[%d]: set exactly one of header, cookie, query", i))
		}
		if s.Prefix != "" && s.Header == "" {
			errs = append(errs, fmt.Errorf("sources[%d].prefix: only valid with header", i))
		}
	}
	// Forwarded claims.
	fwd := c.ForwardClaims
	if fwd == nil {
		fwd = map[string]string{"sub": "x-jwt-sub"}
	}
	for claim, h := range fwd {
		if claim == "" || !validHeaderName(h) {
			errs = append(errs, fmt.Errorf("forward_claims[%q]: invalid header name %q", claim, h))
			continue
		}
		a.forward = append(a.forward, [2]string{claim, textproto.CanonicalMIMEHeaderKey(h)})
	}
	sortPairs(a.forward)
	// Cache, verify, realm.
	size := defaultCacheSize
	if c.CacheSize != nil {
		size = *c.CacheSize
		if size < 0 || size > 1<<20 {
			errs = append(errs, fmt.Errorf("cache_size: %d out of range (0 to 1048576)", size))
		}
	}
	a.cache = newTokenCache(size)
	switch c.Verify {
	case "", "host":
		a.hostVerify = true
	case "guest":
	default:
		errs = append(errs, fmt.Errorf("verify: %q is not host or guest", c.Verify))
	}
	if a.realm == "" {
		a.realm = defaultRealm
	}
	if strings.ContainsAny(a.realm, "\"\\\r\n") {
		errs = append(errs, errors.New("realm: must not contain quotes, backslashes or newlines"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

func (kc *KeyConfig) toKey() (*key, error) {
	n := 0
	for _, v := range []string{kc.PEM, kc.Secret, kc.SecretBase64} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("set exactly one of pem, secret, secret_base64")
	}
	if kc.Alg != "" {
		if _, ok := algorithms[kc.Alg]; !ok {
			return nil, fmt.Errorf("alg: unsupported algorithm %q", kc.Alg)
		}
	}
	if kc.PEM != "" {
		k, err := parsePEMKey([]byte(kc.PEM))
		if err != nil {
			return nil, fmt.Errorf("pem: %w", err)
		}
		k.kid = kc.Kid
		if kc.Alg != "" {
			k.alg = kc.Alg
			if !algorithms[k.alg].fits(k) {
				return nil, fmt.Errorf("alg: a %s key cannot verify %s", k.kty, k.alg)
			}
		}
		return k, nil
	}
	if kc.Alg == "" || algorithms[kc.Alg].kty != ktyOct {
		return nil, errors.New("alg: a secret needs alg HS256, HS384 or HS512")
	}
	secret := []byte(kc.Secret)
	if kc.SecretBase64 != "" {
		s := strings.TrimRight(kc.SecretBase64, "=")
		b, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(s)
		}
		if err != nil {
			return nil, fmt.Errorf("secret_base64: %w", err)
		}
		secret = b
	}
	if min := algorithms[kc.Alg].hash.Size(); len(secret) < min {
		return nil, fmt.Errorf("secret: %s needs at least %d bytes, got %d", kc.Alg, min, len(secret))
	}
	return &key{kid: kc.Kid, alg: kc.Alg, kty: ktyOct, secret: secret}, nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func sortPairs(p [][2]string) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j][0] < p[j-1][0]; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}
