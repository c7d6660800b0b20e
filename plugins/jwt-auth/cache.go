package main

import (
	"crypto/sha256"
	"time"
)

// maxCacheTTL bounds how long a verified token is trusted without redoing
// the signature check, also for tokens that carry no exp.
const maxCacheTTL = 5 * time.Minute

// identity is what a verified token yields: the per-request values, the
// headers to forward and when it stops being valid.
type identity struct {
	values  [][2]string
	headers [][2]string
	// until is when the cached entry stops being used.
	until time.Time
}

// tokenCache is a bounded map of verified tokens keyed by the SHA-256 of the
// token, evicting the oldest insertion first. It lives in one guest
// instance, is only an optimisation and needs no locking (a guest instance
// runs one call at a time).
type tokenCache struct {
	max   int
	m     map[[32]byte]*identity
	order [][32]byte
	next  int
	// hits counts lookups answered from the cache.
	hits uint64
}

func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{max: max, m: make(map[[32]byte]*identity, max), order: make([][32]byte, 0, max)}
}

func (c *tokenCache) get(sum [32]byte, now time.Time) *identity {
	if c == nil {
		return nil
	}
	id, ok := c.m[sum]
	if !ok {
		return nil
	}
	if !now.Before(id.until) {
		delete(c.m, sum)
		return nil
	}
	c.hits++
	return id
}

func (c *tokenCache) put(sum [32]byte, id *identity) {
	if c == nil {
		return
	}
	if _, ok := c.m[sum]; ok {
		c.m[sum] = id
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, sum)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = sum
		c.next = (c.next + 1) % c.max
	}
	c.m[sum] = id
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return len(c.m)
}

func tokenSum(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

func (c *tokenCache) hitCount() uint64 {
	if c == nil {
		return 0
	}
	return c.hits
}
