// Command jwt-auth is the wasmgate plugin that authenticates requests with
// JSON Web Tokens (JWS compact form). See docs/plugins-reference.md.
//
// It verifies HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 and
// EdDSA with keys from an inline JWKS, a JWKS file the proxy inlines, or
// PEM; checks exp/nbf/iat with leeway, iss, aud and required claims;
// forwards chosen claims as headers and keeps every claim as a per-request
// value "jwt.<claim>" for later plugins. Failures get 401 with a
// WWW-Authenticate: Bearer challenge. Verified tokens are cached per
// instance until they expire.
package main

import (
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&plugin{}) }

var deniedTotal = sdk.NewCounter("jwt_auth_denied_total", "Requests refused by jwt-auth.")

type plugin struct{ a *authenticator }

// Configure compiles the config; a bad config is refused with its reasons.
func (p *plugin) Configure() error {
	a, err := parseConfig(sdk.ConfigBytes())
	if err != nil {
		return err
	}
	a.verifyHostFn = hostVerify
	p.a = a
	return nil
}

// hostVerify runs the signature math natively in the proxy.
func hostVerify(alg string, k *key, data, sig []byte) error {
	return sdk.VerifySignature(alg, k.der, data, sig)
}

// OnRequest authenticates the request. Host calls cost microseconds, so
// the hot path (a cached token) makes as few as it can: one header read,
// one SetValue per claim and one Set per forwarded claim.
func (p *plugin) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	a := p.a
	h := req.Header()
	get := func(name string) (string, bool) {
		v := h.Values(name)
		if len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	tok, src, err := a.extract(get, req.RawQuery)
	if err == errNoToken && a.optional {
		// Headers we forward are ours alone: drop what the client sent.
		for _, f := range a.forward {
			h.Del(f[1])
		}
		return sdk.Continue
	}
	var id *identity
	if err == nil {
		id, err = a.verify(tok, time.Now())
	}
	if err != nil {
		deniedTotal.Inc()
		if sdk.LogEnabled(sdk.LevelDebug) {
			sdk.Log(sdk.LevelDebug, "jwt-auth: refused: "+err.Error())
		}
		body := `{"status":401,"error":"unauthorized","reason":` + jsonString(description(err)) + "}\n"
		return sdk.Respond(resp, 401, map[string]string{
			"WWW-Authenticate": a.challenge(err),
			"Content-Type":     "application/json",
		}, []byte(body))
	}
	for _, v := range id.values {
		sdk.SetValue(v[0], v[1])
	}
	// Set replaces whatever the client sent; a claim the token lacks still
	// removes the client's header.
	for _, f := range id.forward {
		if f[1] == "" {
			h.Del(f[0])
		} else {
			h.Set(f[0], f[1])
		}
	}
	if a.stripToken {
		strip(req, src)
	}
	return sdk.Continue
}

// strip removes the token from where it was found.
func strip(req sdk.Request, src *Source) {
	h := req.Header()
	switch {
	case src.Header != "":
		h.Del(src.Header)
	case src.Cookie != "":
		if rest := removeCookie(strings.Join(h.Values("Cookie"), "; "), src.Cookie); rest != "" {
			h.Set("Cookie", rest)
		} else {
			h.Del("Cookie")
		}
	case src.Query != "":
		req.SetURI(sdk.RemoveQueryParam(req.URI(), src.Query))
	}
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
