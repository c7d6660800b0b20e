package main

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memCounters is a fake store; fail decides which keys error.
type memCounters struct {
	mu   sync.Mutex
	m    map[string]int64
	fail func(key string) bool
}

func newMemCounters() *memCounters { return &memCounters{m: map[string]int64{}} }

func (c *memCounters) Incr(key string, delta int64, _ time.Duration) (int64, error) {
	if c.fail != nil && c.fail(key) {
		return 0, errors.New("store down")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] += delta
	return c.m[key], nil
}

func (c *memCounters) sumPrefix(prefix string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for k, v := range c.m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// mapLookup serves key parts from maps.
type mapLookup struct {
	ip     string
	values map[string]string
	hdr    map[string]string
}

func (l mapLookup) Part(kp keyPart) (string, bool) {
	switch kp.kind {
	case keyClientIP:
		return l.ip, l.ip != ""
	case keyHeader:
		v, ok := l.hdr[kp.name]
		return v, ok
	case keyValue:
		v, ok := l.values[kp.name]
		return v, ok
	}
	return "", false
}

func (l mapLookup) Value(name string) (string, bool) {
	v, ok := l.values[name]
	return v, ok
}

func mustPlan(t *testing.T, cfg Config) *plan {
	t.Helper()
	p, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailurePolicies(t *testing.T) {
	now := base.Add(100 * time.Millisecond)
	req := mapLookup{ip: "10.0.0.1"}
	shared := func(key string) bool { return !strings.HasPrefix(key, localPrefix) }
	tests := []struct {
		name       string
		policy     string
		fail       func(string) bool
		wantAllow  int // of 5 requests, quota 3
		wantFailed bool
		wantLocal  bool
	}{
		{name: "store up", policy: "fail_closed", wantAllow: 3},
		{name: "fail_open counts locally", policy: "fail_open", fail: shared, wantAllow: 3, wantLocal: true},
		{name: "fail_closed answers failure status", policy: "fail_closed", fail: shared, wantAllow: 0, wantFailed: true},
		{name: "local store down too lets requests through", policy: "fail_open", fail: func(string) bool { return true }, wantAllow: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPlan(t, Config{Limits: []LimitConfig{
				{Name: "a", Requests: 100, Window: "1h"},
				{Name: "b", Requests: 3, Window: "1m", FailurePolicy: tc.policy, FailureStatus: 429},
			}})
			c := newMemCounters()
			c.fail = func(key string) bool {
				return strings.Contains(key, "rate-limit:b:") && tc.fail != nil && tc.fail(key)
			}
			allowed := 0
			for range 5 {
				d := decide(p, c, now, req, &scratch{})
				if d.failed != tc.wantFailed {
					t.Fatalf("failed = %v", d.failed)
				}
				if d.failed && (d.status != 429 || d.retryAfter <= 0) {
					t.Fatalf("failure decision %+v", d)
				}
				if d.allowed {
					allowed++
				}
				if wantSkipped := tc.wantAllow == 5 && tc.fail != nil; (d.storeErrors == 1) != wantSkipped {
					t.Fatalf("storeErrors = %d, want the limit skipped: %v", d.storeErrors, wantSkipped)
				}
			}
			if allowed != tc.wantAllow {
				t.Fatalf("allowed %d, want %d", allowed, tc.wantAllow)
			}
			if got := c.sumPrefix(localPrefix); (got > 0) != tc.wantLocal {
				t.Fatalf("local counters total %d, want local=%v", got, tc.wantLocal)
			}
			// Limit a is counted only for allowed requests: earlier
			// increments are refunded when b denies or fails.
			if got := c.sumPrefix("rate-limit:a:"); got != int64(allowed) {
				t.Fatalf("limit a counted %d, want %d", got, allowed)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	w := 10 * time.Second
	tests := []struct {
		name              string
		quota, cur, prev  int64
		elapsed, min, max time.Duration
	}{
		{"window full, no previous", 10, 10, 0, 2 * time.Second, 9 * time.Second, 9 * time.Second},
		{"window full, previous full", 10, 10, 10, 0, 11 * time.Second, 11 * time.Second},
		{"previous weighs", 10, 5, 10, 2 * time.Second, 4 * time.Second, 4 * time.Second},
		{"never below one second", 10, 9, 10, 9900 * time.Millisecond, time.Second, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := retryAfter(tc.quota, tc.cur, tc.prev, tc.elapsed, w)
			if got < tc.min-time.Millisecond || got > tc.max+time.Millisecond {
				t.Fatalf("retryAfter = %v, want %v..%v", got, tc.min, tc.max)
			}
		})
	}
}

// TestRetryAfterIsEnough checks against the limiter itself that a client
// retrying after Retry-After is let in, at many points of a window.
func TestRetryAfterIsEnough(t *testing.T) {
	p := mustPlan(t, Config{Limits: []LimitConfig{{Requests: 7, Window: "10s"}}})
	for start := time.Duration(0); start < 20*time.Second; start += 700 * time.Millisecond {
		c := newMemCounters()
		now := base.Add(start)
		sc := &scratch{}
		var d decision
		for range 30 {
			if d = decide(p, c, now, mapLookup{ip: "1"}, sc); !d.allowed {
				break
			}
			now = now.Add(50 * time.Millisecond)
		}
		if d.allowed {
			t.Fatalf("start %v: never denied", start)
		}
		if d := decide(p, c, now.Add(time.Duration(seconds(d.retryAfter))*time.Second), mapLookup{ip: "1"}, sc); !d.allowed {
			t.Fatalf("start %v: denied again after Retry-After", start)
		}
	}
}

func TestKeyEncoding(t *testing.T) {
	l := &limit{key: []keyPart{{kind: keyHeader, name: "A"}, {kind: keyHeader, name: "B"}}}
	seen := map[string]string{}
	for _, h := range []map[string]string{
		{"A": "x", "B": "1.y"},
		{"A": "x1.", "B": "y"},
		{"A": "x"},
		{"B": "x"},
		{"A": "~", "B": "x"},
		{"A": strings.Repeat("a", 200)},
		{"A": strings.Repeat("a", 201)},
	} {
		sc := &scratch{}
		sc.reset()
		ok := appendKey(sc, l, mapLookup{hdr: h})
		k := string(sc.keys)
		if !ok {
			t.Fatalf("%v: skipped", h)
		}
		if len(k) > maxKeyLen+2 { // ":" and the "h" of a hash
			t.Fatalf("%v: key of %d bytes", h, len(k))
		}
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %s share key %q", h, prev, k)
		}
		seen[k] = strings.Join([]string{h["A"], h["B"]}, ",")
	}
	l.skipMissing = true
	sc := &scratch{}
	sc.reset()
	if appendKey(sc, l, mapLookup{hdr: map[string]string{"A": "x"}}) {
		t.Fatal("missing part with on_missing skip was not skipped")
	}
}

// TestConcurrentExact runs many deciders against one store at once: exactly
// quota requests pass, however they interleave.
func TestConcurrentExact(t *testing.T) {
	p := mustPlan(t, Config{Limits: []LimitConfig{{Requests: 50, Window: "1m"}, {Requests: 1000, Window: "1h"}}})
	c := newMemCounters()
	now := base.Add(time.Second)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			sc := &scratch{}
			for range 50 {
				if decide(p, c, now, mapLookup{ip: "1"}, sc).allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 50 {
		t.Fatalf("allowed %d of 400, want exactly 50", allowed.Load())
	}
}

func BenchmarkDecide(b *testing.B) {
	p, err := compile(Config{Limits: []LimitConfig{
		{Requests: 1 << 40, Window: "1s", Key: []string{"consumer"}},
		{Requests: 1 << 40, Window: "1h", Key: []string{"client_ip", "route"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	c := newMemCounters()
	req := mapLookup{ip: "10.1.2.3", values: map[string]string{"consumer": "alice"}}
	sc := &scratch{}
	b.ReportAllocs()
	for b.Loop() {
		decide(p, c, base, req, sc)
	}
}
