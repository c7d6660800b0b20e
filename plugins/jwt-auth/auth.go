package main

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxCandidateKeys bounds how many keys one token without a kid may try.
const maxCandidateKeys = 8

// headerGetter returns the first value of a request header.
type headerGetter func(name string) (string, bool)

// extract finds the token in the request. It returns the source it came
// from, or errNoToken. rawQuery is only called for query sources.
func (a *authenticator) extract(header headerGetter, rawQuery func() string) (string, *Source, error) {
	for i := range a.sources {
		s := &a.sources[i]
		switch {
		case s.Header != "":
			v, ok := header(s.Header)
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			if s.Prefix != "" {
				p := strings.TrimSpace(s.Prefix)
				if len(v) <= len(p) || !strings.EqualFold(v[:len(p)], p) {
					continue
				}
				v = strings.TrimSpace(v[len(p):])
			}
			if v != "" {
				return v, s, nil
			}
		case s.Cookie != "":
			c, ok := header("Cookie")
			if !ok {
				continue
			}
			if v, ok := cookieValue(c, s.Cookie); ok && v != "" {
				return v, s, nil
			}
		case s.Query != "":
			q, err := url.ParseQuery(rawQuery())
			if err != nil && len(q) == 0 {
				continue
			}
			if v := q.Get(s.Query); v != "" {
				return v, s, nil
			}
		}
	}
	return "", nil, errNoToken
}

// cookieValue finds one cookie in a Cookie header value.
func cookieValue(header, name string) (string, bool) {
	for _, part := range strings.Split(header, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// removeCookie returns the Cookie header without the named cookie; empty
// when nothing is left.
func removeCookie(header, name string) string {
	parts := strings.Split(header, ";")
	kept := parts[:0]
	for _, part := range parts {
		k, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k != name && strings.TrimSpace(part) != "" {
			kept = append(kept, strings.TrimSpace(part))
		}
	}
	return strings.Join(kept, "; ")
}

// verify checks a token at now and returns the identity it proves. Verified
// tokens are cached until they expire.
func (a *authenticator) verify(tok string, now time.Time) (*identity, error) {
	if id := a.cache.get(tok, now); id != nil {
		return id, nil
	}
	p, err := parseToken(tok)
	if err != nil {
		return nil, err
	}
	al := p.header.Alg
	if !a.allowed[al] {
		return nil, invalid("algorithm " + strconv.Quote(al) + " not accepted")
	}
	if err := a.checkSignature(p); err != nil {
		return nil, err
	}
	claims, err := decodeClaims(p.claimsJSON)
	if err != nil {
		return nil, err
	}
	exp, err := a.rules.check(claims, now)
	if err != nil {
		return nil, err
	}
	id := &identity{values: claimValues(claims), until: now.Add(maxCacheTTL)}
	if !exp.IsZero() && exp.Before(id.until) {
		id.until = exp
	}
	for _, f := range a.forward {
		s, ok := claimString(claims[f[0]])
		if !ok || !headerSafe(s) {
			s = ""
		}
		id.forward = append(id.forward, [2]string{f[1], s})
	}
	a.cache.put(tok, id)
	return id, nil
}

// checkSignature selects the keys that may verify this token and tries
// them. Key selection enforces algorithm/key-type agreement.
func (a *authenticator) checkSignature(p *parsedToken) error {
	al := p.header.Alg
	spec := algorithms[al]
	var byKid, noKid, all []*key
	for _, k := range a.keys {
		if !spec.fits(k) || (k.alg != "" && k.alg != al) {
			continue
		}
		all = append(all, k)
		switch {
		case k.kid == "":
			noKid = append(noKid, k)
		case k.kid == p.header.Kid:
			byKid = append(byKid, k)
		}
	}
	candidates := all
	if p.header.Kid != "" {
		// A token naming a key uses that key; keys configured without a
		// kid (a bare PEM) stand in when no key has that id.
		candidates = byKid
		if len(candidates) == 0 {
			candidates = noKid
		}
		if len(candidates) == 0 {
			return invalid("no key with id " + strconv.Quote(p.header.Kid) + " for algorithm " + al)
		}
	}
	if len(candidates) == 0 {
		return invalid("no key for algorithm " + al)
	}
	if len(candidates) > maxCandidateKeys {
		candidates = candidates[:maxCandidateKeys]
	}
	for _, k := range candidates {
		fn := a.verifyGuestFn
		if a.hostVerify && k.kty != ktyOct && a.verifyHostFn != nil {
			fn = a.verifyHostFn
		}
		if fn(al, k, p.signingInput, p.signature) == nil {
			return nil
		}
	}
	return invalid("signature invalid")
}

// challenge is the WWW-Authenticate value for a failure. A request with no
// token gets a bare challenge (RFC 6750 section 3.1).
func (a *authenticator) challenge(err error) string {
	if err == errNoToken {
		return `Bearer realm="` + a.realm + `"`
	}
	return `Bearer realm="` + a.realm + `", error="invalid_token", error_description="` + description(err) + `"`
}

// description is the client-safe reason for a failure.
func description(err error) string {
	if te, ok := err.(*tokenError); ok {
		return strings.NewReplacer(`"`, "'", `\`, "/").Replace(te.desc)
	}
	if err == errNoToken {
		return "no token"
	}
	return "invalid token"
}
