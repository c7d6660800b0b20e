package main

import "time"

// maxCacheTTL bounds how long a verified token is trusted without redoing
// the signature check, also for tokens that carry no exp.
const maxCacheTTL = 5 * time.Minute

// identity is what a verified token yields: the per-request values, the
// headers to forward and when it stops being valid.
type identity struct {
	values [][2]string
	// forward holds one (header, value) per forwarded claim; value is ""
	// when the token lacks the claim (the header is removed then).
	forward [][2]string
	// until is when the cached entry stops being used.
	until time.Time
}

// tokenCache is a bounded map of verified tokens keyed by the token itself,
// evicting the oldest insertion first. It lives in one guest instance, is
// only an optimisation and needs no locking (a guest instance runs one call
// at a time).
//
// The key is the token, not its SHA-256: Go's SHA-256 compiled to Wasm
// costs about 9 µs per 64-byte block (a 700-byte token: 100 µs, more than
// the rest of a cached request), while the runtime's map hash with its
// per-instance random seed is fast and not open to chosen collisions. The
// tokens stay inside the plugin's sandboxed memory.
type tokenCache struct {
	max   int
	m     map[string]*identity
	order []string
	next  int
}

func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{max: max, m: make(map[string]*identity, max), order: make([]string, 0, max)}
}

func (c *tokenCache) get(tok string, now time.Time) *identity {
	if c == nil {
		return nil
	}
	id, ok := c.m[tok]
	if !ok {
		return nil
	}
	if !now.Before(id.until) {
		delete(c.m, tok)
		return nil
	}
	return id
}

func (c *tokenCache) put(tok string, id *identity) {
	if c == nil {
		return
	}
	if _, ok := c.m[tok]; ok {
		c.m[tok] = id
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, tok)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = tok
		c.next = (c.next + 1) % c.max
	}
	c.m[tok] = id
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return len(c.m)
}
