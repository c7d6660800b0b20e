package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// fixture drives the plugin on a fake host whose clock the plugin shares.
type fixture struct {
	t   *testing.T
	h   *sdktest.Host
	now time.Time
}

// base is sdktest's clock origin: aligned to every window length used here.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, cfg string) *fixture {
	t.Helper()
	f := &fixture{t: t, h: sdktest.New(t), now: base}
	if err := f.h.Configure(cfg); err != nil {
		t.Fatalf("config refused: %v", err)
	}
	plugin.now = func() time.Time { return f.now }
	t.Cleanup(func() { plugin.now = time.Now })
	return f
}

func (f *fixture) advance(d time.Duration) {
	f.h.Advance(d)
	f.now = f.now.Add(d)
}

type reqOpt func(*http.Request, *sdktest.Host)

func fromIP(ip string) reqOpt {
	return func(r *http.Request, _ *sdktest.Host) { r.RemoteAddr = ip + ":5555" }
}

func withHeader(k, v string) reqOpt {
	return func(r *http.Request, _ *sdktest.Host) { r.Header.Set(k, v) }
}

func (f *fixture) do(opts ...reqOpt) sdktest.Result {
	f.t.Helper()
	r := sdktest.NewRequest("GET", "/v1/items", "")
	for _, o := range opts {
		o(r, f.h)
	}
	return f.h.Run(r)
}

// allowedN sends n requests and returns how many passed.
func (f *fixture) allowedN(n int, opts ...reqOpt) int {
	f.t.Helper()
	ok := 0
	for range n {
		if f.do(opts...).Status == http.StatusOK {
			ok++
		}
	}
	return ok
}

func TestLimitByClientIP(t *testing.T) {
	f := newFixture(t, `{"limits":[{"name":"per-second","requests":10,"window":"1s"}]}`)
	for i := range 10 {
		res := f.do(fromIP("10.0.0.1"))
		if res.Status != 200 {
			t.Fatalf("request %d: status %d", i, res.Status)
		}
		want := map[string]string{
			"RateLimit-Limit":     "10",
			"RateLimit-Remaining": strconv.Itoa(9 - i),
			"RateLimit-Reset":     "1",
			"RateLimit-Policy":    "10;w=1",
		}
		for k, v := range want {
			if got := res.Header.Get(k); got != v {
				t.Fatalf("request %d: %s = %q, want %q", i, k, got, v)
			}
		}
	}
	res := f.do(fromIP("10.0.0.1"))
	if res.Status != 429 || res.UpstreamCalled {
		t.Fatalf("11th request: status %d, upstream called %v", res.Status, res.UpstreamCalled)
	}
	if got := res.Header.Get("RateLimit-Remaining"); got != "0" {
		t.Errorf("denied RateLimit-Remaining = %q", got)
	}
	if got := res.Header.Get("RateLimit-Limit"); got != "10" {
		t.Errorf("denied RateLimit-Limit = %q", got)
	}
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After = %q, want 1..2 seconds", res.Header.Get("Retry-After"))
	}
	if res.Header.Get("RateLimit-Reset") != res.Header.Get("Retry-After") {
		t.Errorf("denied RateLimit-Reset %q differs from Retry-After %q", res.Header.Get("RateLimit-Reset"), res.Header.Get("Retry-After"))
	}
	var body map[string]string
	if err := json.Unmarshal(res.Body, &body); err != nil || body["limit"] != "per-second" || body["error"] == "" {
		t.Errorf("429 body = %s (%v)", res.Body, err)
	}
	if f.do(fromIP("10.0.0.2")).Status != 200 {
		t.Error("another client IP was limited")
	}
	// Retry-After is honest: after waiting it, one request fits again.
	f.advance(time.Duration(ra) * time.Second)
	if got := f.do(fromIP("10.0.0.1")).Status; got != 200 {
		t.Errorf("after Retry-After: status %d", got)
	}
	if m, ok := f.h.Metric("rate_limit_denied_total"); !ok || m.Value != 1 {
		t.Errorf("rate_limit_denied_total = %+v", m)
	}
}

func TestSlidingWindow(t *testing.T) {
	f := newFixture(t, `{"limits":[{"requests":10,"window":"10s"}]}`)
	if n := f.allowedN(10); n != 10 {
		t.Fatalf("first window allowed %d", n)
	}
	// Just after the boundary the previous window still weighs fully: a
	// fixed window would allow 10 more here.
	f.advance(10 * time.Second)
	if n := f.allowedN(10); n != 0 {
		t.Fatalf("at the window boundary allowed %d, want 0", n)
	}
	// Half way through, half of the previous window has slid out.
	f.advance(5 * time.Second)
	if n := f.allowedN(10); n != 5 {
		t.Fatalf("half way allowed %d, want 5", n)
	}
	// Two windows later everything has slid out.
	f.advance(20 * time.Second)
	if n := f.allowedN(20); n != 10 {
		t.Fatalf("after two windows allowed %d, want 10", n)
	}
}

func TestDeniedRequestsDoNotUseQuota(t *testing.T) {
	f := newFixture(t, `{"limits":[{"requests":3,"window":"1m"}]}`)
	if n := f.allowedN(50); n != 3 {
		t.Fatalf("allowed %d of 50, want 3", n)
	}
	if got := f.h.Counter("rate-limit:limit-0:9.192.0.2.1:" + strconv.FormatInt(base.UnixNano()/int64(time.Minute), 10)); got != 3 {
		t.Fatalf("counter = %d, want 3 (denials refunded)", got)
	}
}

func TestSeveralLimits(t *testing.T) {
	f := newFixture(t, `{"limits":[
		{"name":"burst","requests":3,"window":"1s"},
		{"name":"hourly","requests":5,"window":"1h"}]}`)
	res := f.do()
	if got := res.Header.Get("RateLimit-Policy"); got != "3;w=1, 5;w=3600" {
		t.Errorf("RateLimit-Policy = %q", got)
	}
	if got := res.Header.Get("RateLimit-Limit"); got != "3" {
		t.Errorf("most restrictive limit reported: RateLimit-Limit = %q, want 3", got)
	}
	if n := f.allowedN(5); n != 2 {
		t.Fatalf("burst allowed %d more, want 2", n)
	}
	f.advance(3 * time.Second)
	if n := f.allowedN(5); n != 2 {
		t.Fatalf("after the burst window allowed %d, want 2 (hourly quota 5)", n)
	}
	res = f.do()
	var body map[string]string
	_ = json.Unmarshal(res.Body, &body)
	if res.Status != 429 || body["limit"] != "hourly" {
		t.Fatalf("status %d body %s, want 429 from hourly", res.Status, res.Body)
	}
	if got := res.Header.Get("RateLimit-Limit"); got != "5" {
		t.Errorf("denied by hourly: RateLimit-Limit = %q", got)
	}
	if ra, _ := strconv.Atoi(res.Header.Get("Retry-After")); ra < 3000 {
		t.Errorf("hourly Retry-After = %d s, want most of an hour", ra)
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		values   map[string]string
		props    map[string]string
		a, b     []reqOpt
		separate bool // a and b are counted apart
	}{
		{name: "client ip", key: `["client_ip"]`, a: []reqOpt{fromIP("10.0.0.1")}, b: []reqOpt{fromIP("10.0.0.2")}, separate: true},
		{name: "header", key: `["header:X-Tenant"]`,
			a: []reqOpt{withHeader("X-Tenant", "a"), fromIP("10.0.0.1")}, b: []reqOpt{withHeader("X-Tenant", "b"), fromIP("10.0.0.1")}, separate: true},
		{name: "header shared across ips", key: `["header:X-Tenant"]`,
			a: []reqOpt{withHeader("X-Tenant", "a"), fromIP("10.0.0.1")}, b: []reqOpt{withHeader("X-Tenant", "a"), fromIP("10.0.0.2")}},
		{name: "consumer shared across ips", key: `["consumer"]`, values: map[string]string{"consumer": "alice"},
			a: []reqOpt{fromIP("10.0.0.1")}, b: []reqOpt{fromIP("10.0.0.2")}},
		{name: "jwt claim", key: `["jwt.sub"]`, values: map[string]string{"jwt.sub": "u1"},
			a: []reqOpt{fromIP("10.0.0.1")}, b: []reqOpt{fromIP("10.0.0.2")}},
		{name: "route", key: `["route"]`, props: map[string]string{"route": "api"},
			a: []reqOpt{fromIP("10.0.0.1")}, b: []reqOpt{fromIP("10.0.0.2")}},
		{name: "combination", key: `["client_ip","header:X-Tenant"]`,
			a: []reqOpt{withHeader("X-Tenant", "a"), fromIP("10.0.0.1")}, b: []reqOpt{withHeader("X-Tenant", "a"), fromIP("10.0.0.2")}, separate: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, `{"limits":[{"requests":2,"window":"1m","key":`+tc.key+`}]}`)
			f.h.Values, f.h.Properties = tc.values, tc.props
			if n := f.allowedN(3, tc.a...); n != 2 {
				t.Fatalf("a: allowed %d, want 2", n)
			}
			want := 0
			if tc.separate {
				want = 2
			}
			if n := f.allowedN(3, tc.b...); n != want {
				t.Fatalf("b: allowed %d, want %d", n, want)
			}
		})
	}
}

func TestOnMissing(t *testing.T) {
	f := newFixture(t, `{"limits":[{"requests":1,"window":"1m","key":["consumer"],"on_missing":"skip"}]}`)
	if n := f.allowedN(5); n != 5 {
		t.Fatalf("skip: allowed %d of 5 without consumer", n)
	}
	if got := f.do().Header.Get("RateLimit-Limit"); got != "" {
		t.Errorf("skipped limit reported RateLimit-Limit %q", got)
	}
	f = newFixture(t, `{"limits":[{"requests":1,"window":"1m","key":["consumer"]}]}`)
	if n := f.allowedN(5, fromIP("10.0.0.1")) + f.allowedN(5, fromIP("10.0.0.2")); n != 1 {
		t.Fatalf("shared: allowed %d, want 1 for all requests without consumer", n)
	}
}

func TestTiers(t *testing.T) {
	cfg := `{"tier_value":"plan","limits":[{"requests":2,"window":"1m","key":["consumer"],"tiers":{"gold":5}}]}`
	tests := []struct {
		values map[string]string
		want   int
	}{
		{map[string]string{"consumer": "a", "plan": "gold"}, 5},
		{map[string]string{"consumer": "b", "plan": "free"}, 2},
		{map[string]string{"consumer": "c"}, 2},
	}
	for _, tc := range tests {
		f := newFixture(t, cfg)
		f.h.Values = tc.values
		if n := f.allowedN(10); n != tc.want {
			t.Errorf("values %v: allowed %d, want %d", tc.values, n, tc.want)
		}
	}
	// A limit with tiers only applies to those tiers.
	f := newFixture(t, `{"limits":[{"window":"1m","tiers":{"trial":1}}]}`)
	f.h.Values = map[string]string{"tier": "trial"}
	if n := f.allowedN(3); n != 1 {
		t.Errorf("trial: allowed %d, want 1", n)
	}
	f.h.Values = map[string]string{"tier": "paid"}
	if n := f.allowedN(3); n != 3 {
		t.Errorf("paid: allowed %d, want 3 (no limit)", n)
	}
}

func TestHeadersOff(t *testing.T) {
	f := newFixture(t, `{"headers":false,"status":503,"limits":[{"requests":1,"window":"1s"}]}`)
	res := f.do()
	if res.Status != 200 || res.Header.Get("RateLimit-Limit") != "" {
		t.Fatalf("allowed: status %d, RateLimit-Limit %q", res.Status, res.Header.Get("RateLimit-Limit"))
	}
	res = f.do()
	if res.Status != 503 || res.Header.Get("RateLimit-Limit") != "1" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("denied: status %d headers %v", res.Status, res.Header)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg, want string
	}{
		{`{}`, "limits: at least one limit"},
		{`{"limits":[{"requests":1}]}`, "limits[0].window: is required"},
		{`{"limits":[{"requests":1,"window":"soon"}]}`, "limits[0].window: not a duration"},
		{`{"limits":[{"requests":1,"window":"500ms"}]}`, "limits[0].window: must be at least 1s"},
		{`{"limits":[{"window":"1s"}]}`, "limits[0].requests: must be at least 1"},
		{`{"limits":[{"requests":1,"window":"1s","key":["cookie"]}]}`, `limits[0].key[0]: unknown key part "cookie"`},
		{`{"limits":[{"requests":1,"window":"1s","key":["header:"]}]}`, `limits[0].key[0]: unknown key part`},
		{`{"limits":[{"name":"a","requests":1,"window":"1s"},{"name":"a","requests":1,"window":"1m"}]}`, `limits[1].name: duplicate limit name "a"`},
		{`{"limits":[{"name":"a b","requests":1,"window":"1s"}]}`, `limits[0].name: must not contain`},
		{`{"limits":[{"requests":1,"window":"1s","tiers":{"gold":0}}]}`, `limits[0].tiers["gold"]: must be at least 1`},
		{`{"limits":[{"requests":1,"window":"1s","on_missing":"deny"}]}`, `limits[0].on_missing: must be shared or skip`},
		{`{"limits":[{"requests":1,"window":"1s","failure_policy":"open"}]}`, `limits[0].failure_policy: must be fail_open or fail_closed`},
		{`{"limits":[{"requests":1,"window":"1s","failure_status":200}]}`, `limits[0].failure_status: must be a 4xx or 5xx`},
		{`{"status":302,"limits":[{"requests":1,"window":"1s"}]}`, `status: must be a 4xx or 5xx`},
		{`{"limits":[{"requests":1,"window":"1s","burst":5}]}`, `unknown field "burst"`},
	}
	for _, tc := range tests {
		err := sdktest.ConfigError(t, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %s: error %v, want it to contain %q", tc.cfg, err, tc.want)
		}
	}
	// Every problem is reported, not only the first.
	err := sdktest.ConfigError(t, `{"limits":[{"window":"x"},{"requests":1,"window":"1s","key":["nope"]}]}`)
	if err == nil || strings.Count(err.Error(), "rate-limit:") < 3 {
		t.Errorf("want three problems, got %v", err)
	}
}
