package main

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits on what a token may push into per-request values and headers.
const (
	maxClaimValues = 64
	maxValueLen    = 4 << 10
)

// claimRules are the registered-claim checks of one plugin config.
type claimRules struct {
	issuers    []string
	audiences  []string
	leeway     time.Duration
	requireExp bool
	required   []string
}

// numericDate reads an exp/nbf/iat claim. ok is false when it is present but
// not a number.
func numericDate(claims map[string]any, name string) (t time.Time, present, ok bool) {
	v, present := claims[name]
	if !present {
		return time.Time{}, false, true
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, true, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// decodeClaims parses the payload as a JSON object, keeping numbers exact.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, invalid("token payload is not a JSON object")
	}
	return claims, nil
}

// check validates the claims at now and returns the expiry (zero if none).
func (r *claimRules) check(claims map[string]any, now time.Time) (time.Time, error) {
	exp, hasExp, ok := numericDate(claims, "exp")
	if !ok {
		return time.Time{}, invalid(`claim "exp" is not a number`)
	}
	if !hasExp && r.requireExp {
		return time.Time{}, invalid(`token has no "exp" claim`)
	}
	if hasExp && !now.Before(exp.Add(r.leeway)) {
		return time.Time{}, invalid("token expired")
	}
	nbf, hasNbf, ok := numericDate(claims, "nbf")
	if !ok {
		return time.Time{}, invalid(`claim "nbf" is not a number`)
	}
	if hasNbf && now.Add(r.leeway).Before(nbf) {
		return time.Time{}, invalid("token not valid yet")
	}
	iat, hasIat, ok := numericDate(claims, "iat")
	if !ok {
		return time.Time{}, invalid(`claim "iat" is not a number`)
	}
	if hasIat && now.Add(r.leeway).Before(iat) {
		return time.Time{}, invalid("token issued in the future")
	}
	if len(r.issuers) > 0 {
		iss, _ := claims["iss"].(string)
		if !contains(r.issuers, iss) {
			return time.Time{}, invalid("issuer not accepted")
		}
	}
	if len(r.audiences) > 0 && !audienceMatches(claims["aud"], r.audiences) {
		return time.Time{}, invalid("audience not accepted")
	}
	for _, name := range r.required {
		if v, ok := claims[name]; !ok || v == nil {
			return time.Time{}, invalid("required claim " + strconv.Quote(name) + " missing")
		}
	}
	if !hasExp {
		return time.Time{}, nil
	}
	return exp, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// audienceMatches accepts an "aud" that is a string or an array of strings
// and contains one of the accepted audiences.
func audienceMatches(aud any, accepted []string) bool {
	switch v := aud.(type) {
	case string:
		return contains(accepted, v)
	case []any:
		for _, a := range v {
			if s, ok := a.(string); ok && contains(accepted, s) {
				return true
			}
		}
	}
	return false
}

// claimString renders a claim for a header or per-request value: strings as
// is, numbers and booleans as JSON text, arrays of scalars joined by single
// spaces (so "roles":["a","b"] reads like a scope), objects as compact JSON.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			switch e.(type) {
			case []any, map[string]any:
				b, err := json.Marshal(x)
				return string(b), err == nil
			}
			s, ok := claimString(e)
			if ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " "), true
	}
	b, err := json.Marshal(v)
	return string(b), err == nil
}

// claimValues turns the claims into per-request values "jwt.<claim>",
// sorted by name, bounded in number and size.
func claimValues(claims map[string]any) [][2]string {
	names := make([]string, 0, len(claims))
	for n := range claims {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([][2]string, 0, min(len(names), maxClaimValues))
	for _, n := range names {
		if len(out) == maxClaimValues {
			break
		}
		s, ok := claimString(claims[n])
		if !ok || len(s) > maxValueLen {
			continue
		}
		out = append(out, [2]string{"jwt." + n, s})
	}
	return out
}

// headerSafe reports whether s may be sent as a header value.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return len(s) <= maxValueLen
}
