// Command rate-limit is wasmgate's rate-limiting plugin. It limits requests
// per client IP, header, consumer, JWT claim, route or any combination,
// with several limits per route and per-tier quotas. Counters live in the
// host store (memory, or Redis to make limits global across proxies), as a
// sliding window approximated from two fixed windows. Denied requests get
// 429 with Retry-After and the IETF RateLimit-Limit, RateLimit-Remaining and
// RateLimit-Reset headers (draft-ietf-httpapi-ratelimit-headers-07), which
// allowed responses carry too. See docs/plugins-reference.md.
package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

// plugin is the registered handler; tests replace its clock.
var plugin = &rateLimit{now: time.Now}

func init() { sdk.Handle(plugin) }

// valueHeaders carries the headers for the response phase host-side:
// "limit remaining reset\npolicy".
const valueHeaders = "rate_limit.headers"

var (
	allowedTotal = sdk.NewCounter("rate_limit_allowed_total", "Requests that passed every rate limit.")
	deniedTotal  = sdk.NewCounter("rate_limit_denied_total", "Requests answered 429 by a rate limit.")
	failedTotal  = sdk.NewCounter("rate_limit_store_failures_total",
		"Requests that met a store failure: answered with failure_status (fail_closed) or counted locally (fail_open).")
)

type rateLimit struct {
	plan *plan
	now  func() time.Time
	// st and sc are per-call working state, reused so the hot path does not
	// allocate; nothing in them survives into the response phase.
	st storeCounters
	sc scratch
}

var (
	_ sdk.ResponseHandler = (*rateLimit)(nil)
	_ sdk.Configurer      = (*rateLimit)(nil)
)

// Configure decodes and validates the config.
func (p *rateLimit) Configure() error {
	var cfg Config
	if err := sdk.Config(&cfg); err != nil {
		return errors.New("rate-limit: " + err.Error())
	}
	pl, err := compile(cfg)
	if err != nil {
		return err
	}
	p.plan = pl
	return nil
}

// OnRequest counts the request against every limit and answers 429 when
// one is exceeded.
func (p *rateLimit) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	p.st.failed = false
	d := decide(p.plan, &p.st, p.now(), sdkLookup{req: req}, &p.sc)
	if p.st.failed {
		failedTotal.Inc()
	}
	switch {
	case d.failed:
		resp.Header().Set("Retry-After", p.num(seconds(d.retryAfter)))
		return sdk.RespondJSON(resp, d.status, map[string]string{
			"error": "rate limit unavailable", "limit": d.name,
		})
	case !d.allowed:
		deniedTotal.Inc()
		h := resp.Header()
		h.Set("Retry-After", p.num(seconds(d.retryAfter)))
		h.Set("RateLimit-Limit", p.num(d.limit))
		h.Set("RateLimit-Remaining", p.num(d.remaining))
		h.Set("RateLimit-Reset", p.num(seconds(d.reset)))
		if d.policy != "" {
			h.Set("RateLimit-Policy", d.policy)
		}
		return sdk.RespondJSON(resp, d.status, map[string]string{
			"error": "rate limit exceeded", "limit": d.name,
		})
	}
	allowedTotal.Inc()
	if p.plan.headers && d.reported {
		b := strconv.AppendInt(p.sc.value[:0], d.limit, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, d.remaining, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, seconds(d.reset), 10)
		b = append(b, '\n')
		b = append(b, d.policy...)
		p.sc.value = b
		sdk.SetValue(valueHeaders, hostString(b))
	}
	return sdk.Continue
}

// num formats v for one host call (see hostString).
func (p *rateLimit) num(v int64) string {
	p.sc.value = strconv.AppendInt(p.sc.value[:0], v, 10)
	return hostString(p.sc.value)
}

// OnResponse adds the RateLimit headers computed in OnRequest.
func (p *rateLimit) OnResponse(_ sdk.Request, resp sdk.Response) {
	v, ok := sdk.Value(valueHeaders)
	if !ok {
		return
	}
	nums, policy, _ := strings.Cut(v, "\n")
	limit, rest, ok1 := strings.Cut(nums, " ")
	remaining, reset, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return
	}
	h := resp.Header()
	h.Set("RateLimit-Limit", limit)
	h.Set("RateLimit-Remaining", remaining)
	h.Set("RateLimit-Reset", reset)
	if policy != "" {
		h.Set("RateLimit-Policy", policy)
	}
}

// storeCounters is the host store seen through the SDK.
type storeCounters struct {
	failed bool
}

func (s *storeCounters) Incr(key string, delta int64, window time.Duration) (int64, error) {
	v, _, err := sdk.CounterIncr(key, delta, window)
	if err != nil {
		s.failed = true
	}
	return v, err
}

// sdkLookup reads key parts from the current request.
type sdkLookup struct {
	req sdk.Request
}

func (l sdkLookup) Part(kp keyPart) (string, bool) {
	switch kp.kind {
	case keyClientIP:
		if ip, ok := sdk.Property(sdk.PropClientIP); ok && ip != "" {
			return ip, true
		}
		return hostOf(l.req.SourceAddr())
	case keyRoute:
		return sdk.Property(sdk.PropRoute)
	case keyHeader:
		v := l.req.Header().Get(kp.name)
		return v, v != ""
	case keyValue:
		return sdk.Value(kp.name)
	case keyProperty:
		return sdk.Property(kp.name)
	}
	return "", false
}

func (l sdkLookup) Value(name string) (string, bool) { return sdk.Value(name) }

// hostOf returns the host of a host:port address ("[::1]:80" -> "::1").
func hostOf(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return "", false
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr[:i], "["), "]")
	return host, host != ""
}
