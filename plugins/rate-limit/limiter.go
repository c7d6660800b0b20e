package main

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
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

// scratch is working memory for keys and header values, reused from call
// to call (a guest instance runs one call at a time): allocation is dear in
// a Go Wasm guest, so the hot path builds its strings here. Strings made
// from it with hostString are only valid until the next reset.
type scratch struct {
	keys   []byte
	policy []byte
	value  []byte
}

func (s *scratch) reset() {
	if s.keys == nil {
		s.keys = make([]byte, 0, 512)
		s.policy = make([]byte, 0, 64)
		s.value = make([]byte, 0, 128)
	}
	s.keys, s.policy, s.value = s.keys[:0], s.policy[:0], s.value[:0]
}

// appendPolicy adds one limit to the RateLimit-Policy value.
func (s *scratch) appendPolicy(quota int64, w time.Duration) {
	if len(s.policy) > 0 {
		s.policy = append(s.policy, ", "...)
	}
	s.policy = strconv.AppendInt(s.policy, quota, 10)
	s.policy = append(s.policy, ";w="...)
	s.policy = strconv.AppendInt(s.policy, int64(math.Ceil(w.Seconds())), 10)
}

// decide applies the plan's limits to one request at now. Each limit is a
// sliding window approximated from two fixed windows: the count of the
// current window plus the previous window's count weighted by the share of
// it still inside the sliding window. The request is counted first (one
// atomic increment) and refunded when any limit denies, so denied requests
// do not use up quota and concurrent requests cannot overshoot. The
// decision's policy aliases s.
func decide(p *plan, c counters, now time.Time, req lookup, s *scratch) decision {
	s.reset()
	var incs [8]increment
	done := incs[:0]
	d := decision{allowed: true}
	tier, hasTier := "", false
	if p.needTier {
		tier, hasTier = req.Value(p.tierValue)
	}
	nowNs := now.UnixNano()
	for i := range p.limits {
		l := &p.limits[i]
		quota := l.requests
		if hasTier {
			if n, ok := l.tiers[tier]; ok {
				quota = n
			}
		}
		if quota == 0 { // tiers only, and this client has none of them
			continue
		}
		start := len(s.keys)
		if !appendKey(s, l, req) {
			s.keys = s.keys[:start]
			continue
		}
		w := l.window
		idx := nowNs / int64(w)
		elapsed := time.Duration(nowNs - idx*int64(w))
		ttl := 2 * w // the current window is read as "previous" during the next one

		// "local:" + base + idx, then "local:" + base + (idx-1): the keys
		// without the local prefix are suffixes of these.
		curAt := len(s.keys)
		s.keys = append(s.keys, localPrefix...)
		s.keys = append(s.keys, s.keys[start:curAt]...)
		s.keys = strconv.AppendInt(s.keys, idx, 10)
		prevAt := len(s.keys)
		s.keys = append(s.keys, s.keys[curAt:curAt+len(localPrefix)+curAt-start]...)
		s.keys = strconv.AppendInt(s.keys, idx-1, 10)
		localCur, localPrev := hostString(s.keys[curAt:prevAt]), hostString(s.keys[prevAt:])
		curKey, prevKey := localCur[len(localPrefix):], localPrev[len(localPrefix):]

		cur, err := c.Incr(curKey, 1, ttl)
		if err != nil {
			if l.failClosed {
				refund(c, done)
				return decision{failed: true, status: l.failureStatus, name: l.name, retryAfter: time.Second}
			}
			curKey, prevKey = localCur, localPrev
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
		s.appendPolicy(quota, w)
		if est > float64(quota) {
			refund(c, done)
			retry := retryAfter(quota, cur-1, prev, elapsed, w)
			return decision{
				status: p.status, name: l.name, reported: true,
				limit: quota, remaining: 0, reset: retry, retryAfter: retry,
				policy: hostString(s.policy), storeErrors: d.storeErrors,
			}
		}
		remaining := max(int64(math.Floor(float64(quota)-est)), 0)
		if !d.reported || remaining < d.remaining {
			d.reported, d.name = true, l.name
			d.limit, d.remaining, d.reset = quota, remaining, w-elapsed
		}
	}
	d.policy = hostString(s.policy)
	return d
}

// refund takes back the increments of a request that is not let through.
func refund(c counters, done []increment) {
	for _, in := range done {
		_, _ = c.Incr(in.key, -1, in.window)
	}
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

// appendKey appends the limit's counter key base for the request to s.keys:
// "rate-limit:<name>:<key>:". False means the limit does not apply (a key
// part is missing and on_missing is skip).
func appendKey(s *scratch, l *limit, req lookup) bool {
	s.keys = append(s.keys, l.prefix...)
	from := len(s.keys)
	for _, kp := range l.key {
		v, ok := req.Part(kp)
		if !ok || v == "" {
			if l.skipMissing {
				return false
			}
			s.keys = append(s.keys, '~') // cannot collide: present parts start with a digit
			continue
		}
		// Length-prefixed, so no value can forge another combination.
		s.keys = strconv.AppendInt(s.keys, int64(len(v)), 10)
		s.keys = append(s.keys, '.')
		s.keys = append(s.keys, v...)
	}
	if len(s.keys)-from > maxKeyLen {
		sum := sha256.Sum256(s.keys[from:])
		s.keys = append(s.keys[:from], 'h')
		s.keys = hex.AppendEncode(s.keys, sum[:16])
	}
	s.keys = append(s.keys, ':')
	return true
}

// seconds rounds d up to whole seconds, at least 1, for headers.
func seconds(d time.Duration) int64 {
	return max(int64(math.Ceil(d.Seconds())), 1)
}
