package main

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"
)

// localPrefix is the store's process-local key space (proxy/store
// LocalPrefix): keys under it never leave the proxy, also with Redis.
const localPrefix = "local:"

// maxKeyLen is the longest key value kept verbatim; longer ones are hashed.
const maxKeyLen = 128

// counters is the slice of the host store the limiter needs.
type counters interface {
	// Incr adds delta to key (a window-long counter that starts at its
	// first increment) and returns the new value.
	Incr(key string, delta int64, window time.Duration) (int64, error)
}

// lookup reads one key part of the current request.
type lookup interface {
	Part(p keyPart) (string, bool)
	// Value returns a per-request value (used for the tier).
	Value(name string) (string, bool)
}

// decision is the outcome for one request.
type decision struct {
	// allowed: the request passes every limit.
	allowed bool
	// failed: the store failed under a fail_closed limit; status says how
	// to answer.
	failed bool
	status int
	// name of the limit that denied, or the one reported.
	name string
	// reported is true when limit/remaining/reset describe a limit.
	reported  bool
	limit     int64
	remaining int64
	reset     time.Duration
	// retryAfter is set on denials and failures.
	retryAfter time.Duration
	// policy is the RateLimit-Policy value: every applied limit, "q;w=s".
	policy string
	// storeErrors counts limits skipped because the store failed twice.
	storeErrors int
}

// increment is one counted request, refunded if a later limit denies.
type increment struct {
	key    string
	window time.Duration
}

// decide applies the plan's limits to one request at now. Each limit is a
// sliding window approximated from two fixed windows: the count of the
// current window plus the previous window's count weighted by the share of
// it still inside the sliding window. The request is counted first (one
// atomic increment) and refunded when any limit denies, so denied requests
// do not use up quota and concurrent requests cannot overshoot.
func decide(p *plan, c counters, now time.Time, req lookup) decision {
	var incs [4]increment
	done := incs[:0]
	refund := func() {
		for _, in := range done {
			_, _ = c.Incr(in.key, -1, in.window)
		}
	}
	d := decision{allowed: true}
	var policy strings.Builder
	tier, hasTier := "", false
	if p.needTier {
		tier, hasTier = req.Value(p.tierValue)
	}
	for i := range p.limits {
		l := &p.limits[i]
		kv, ok := buildKey(l, req)
		if !ok {
			continue
		}
		quota := l.requests
		if hasTier {
			if n, ok := l.tiers[tier]; ok {
				quota = n
			}
		}
		if quota == 0 { // tiers only, and this client has none of them
			continue
		}
		w := l.window
		nowNs := now.UnixNano()
		idx := nowNs / int64(w)
		elapsed := time.Duration(nowNs - idx*int64(w))
		base := l.prefix + kv + ":"
		curKey := base + strconv.FormatInt(idx, 10)
		prevKey := base + strconv.FormatInt(idx-1, 10)
		ttl := 2 * w // the current window is read as "previous" during the next one

		cur, err := c.Incr(curKey, 1, ttl)
		if err != nil {
			if l.failClosed {
				refund()
				return decision{failed: true, status: l.failureStatus, name: l.name, retryAfter: time.Second}
			}
			curKey, prevKey = localPrefix+curKey, localPrefix+prevKey
			if cur, err = c.Incr(curKey, 1, ttl); err != nil {
				d.storeErrors++
				continue
			}
		}
		done = append(done, increment{curKey, ttl})
		var prev int64
		if cur <= quota { // a full current window denies without reading the previous one
			if prev, err = c.Incr(prevKey, 0, ttl); err != nil {
				prev = 0 // a fixed window for this request
			}
		}
		weight := float64(w-elapsed) / float64(w)
		est := float64(cur) + float64(prev)*weight
		if policy.Len() > 0 {
			policy.WriteString(", ")
		}
		policy.WriteString(strconv.FormatInt(quota, 10))
		policy.WriteString(";w=")
		policy.WriteString(strconv.FormatInt(int64(math.Ceil(w.Seconds())), 10))
		if est > float64(quota) {
			refund()
			retry := retryAfter(quota, cur-1, prev, elapsed, w)
			return decision{
				status: p.status, name: l.name, reported: true,
				limit: quota, remaining: 0, reset: retry, retryAfter: retry,
				policy: policy.String(), storeErrors: d.storeErrors,
			}
		}
		remaining := max(int64(math.Floor(float64(quota)-est)), 0)
		if !d.reported || remaining < d.remaining {
			d.reported, d.name = true, l.name
			d.limit, d.remaining, d.reset = quota, remaining, w-elapsed
		}
	}
	d.policy = policy.String()
	return d
}

// retryAfter is how long a client denied at elapsed into a window must wait
// until one more request fits: count requests in the current window and
// prev in the previous one, quota per window w.
func retryAfter(quota, count, prev int64, elapsed, w time.Duration) time.Duration {
	left := w - elapsed
	if count+1 <= quota {
		// Denied by the previous window's weight: wait until it has slid
		// out far enough.
		if prev <= 0 {
			return time.Second
		}
		d := left - time.Duration(float64(quota-count-1)*float64(w)/float64(prev))
		return max(d, time.Second)
	}
	// The current window is full: in the next one, it becomes the previous.
	next := time.Duration(0)
	if count > 0 && quota-1 < count {
		next = w - time.Duration(float64(quota-1)*float64(w)/float64(count))
	}
	return max(left+next, time.Second)
}

// buildKey builds the limit's key for the request; false means the limit
// does not apply (a key part is missing and on_missing is skip).
func buildKey(l *limit, req lookup) (string, bool) {
	var b strings.Builder
	for _, kp := range l.key {
		v, ok := req.Part(kp)
		if !ok || v == "" {
			if l.skipMissing {
				return "", false
			}
			b.WriteByte('~') // cannot collide: present parts start with a digit
			continue
		}
		// Length-prefixed, so no value can forge another combination.
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte('.')
		b.WriteString(v)
	}
	if b.Len() > maxKeyLen {
		sum := sha256.Sum256([]byte(b.String()))
		return "h" + hex.EncodeToString(sum[:16]), true
	}
	return b.String(), true
}

// seconds rounds d up to whole seconds, at least 1, for headers.
func seconds(d time.Duration) int64 {
	return max(int64(math.Ceil(d.Seconds())), 1)
}
