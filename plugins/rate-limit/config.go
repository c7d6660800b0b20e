package main

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the plugin's JSON config.
type Config struct {
	// Limits apply in order; a request must pass all of them.
	Limits []LimitConfig `json:"limits"`
	// TierValue is the per-request value that holds the client's tier (set
	// by api-key, or by jwt-auth as "jwt.<claim>"). Default "tier".
	TierValue string `json:"tier_value"`
	// Status is the status of a rate-limited answer. Default 429.
	Status int `json:"status"`
	// Headers adds RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and
	// RateLimit-Policy to allowed responses. Default true. Denied answers
	// always carry them, and Retry-After.
	Headers *bool `json:"headers"`
}

// LimitConfig is one limit: at most Requests per Window for each key.
type LimitConfig struct {
	// Name identifies the limit in counter keys, logs and the 429 body.
	// Default "limit-<index>". Limits with the same name and key share
	// their counters, also across routes and plugin instances.
	Name string `json:"name"`
	// Requests allowed per window. Required unless every tier has a limit.
	Requests int64 `json:"requests"`
	// Window is a Go duration of at least 1s, e.g. "1s", "1m", "1h".
	Window string `json:"window"`
	// Key lists what the limit counts by; the parts are combined. Parts:
	// client_ip, route, consumer, jwt.<claim>, header:<name>,
	// value:<per-request value>, property:<request property>.
	// Default [client_ip].
	Key []string `json:"key"`
	// Tiers override Requests for clients of a tier (see TierValue).
	Tiers map[string]int64 `json:"tiers"`
	// OnMissing is what happens when a key part is absent: "shared" (the
	// default: such requests share one counter) or "skip" (the limit does
	// not apply to them).
	OnMissing string `json:"on_missing"`
	// FailurePolicy applies when the shared store fails (Redis down with
	// store.redis.failure_policy fail_closed): "fail_open" (default) counts
	// in this proxy's local store instead, "fail_closed" answers
	// FailureStatus.
	FailurePolicy string `json:"failure_policy"`
	// FailureStatus answers requests under fail_closed. Default 503.
	FailureStatus int `json:"failure_status"`
}

// keyKind is one kind of key part.
type keyKind int

const (
	keyClientIP keyKind = iota
	keyRoute
	keyHeader
	keyValue
	keyProperty
)

// keyPart is a compiled key part.
type keyPart struct {
	kind keyKind
	name string // header, value or property name
}

// limit is a compiled LimitConfig.
type limit struct {
	name          string
	requests      int64
	window        time.Duration
	key           []keyPart
	tiers         map[string]int64
	skipMissing   bool
	failClosed    bool
	failureStatus int
	prefix        string // counter key prefix: "rate-limit:<name>:"
}

// plan is a compiled Config.
type plan struct {
	limits    []limit
	tierValue string
	status    int
	headers   bool
	needTier  bool
}

// compile validates cfg and returns the plan, or every problem found, each
// with its field path.
func compile(cfg Config) (*plan, error) {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("rate-limit: %s: %s", path, fmt.Sprintf(format, args...)))
	}
	p := &plan{tierValue: cfg.TierValue, status: cfg.Status, headers: cfg.Headers == nil || *cfg.Headers}
	if p.tierValue == "" {
		p.tierValue = "tier"
	}
	if p.status == 0 {
		p.status = 429
	}
	if p.status < 400 || p.status > 599 {
		add("status", "must be a 4xx or 5xx status, got %d", p.status)
	}
	if len(cfg.Limits) == 0 {
		add("limits", "at least one limit is required")
	}
	names := map[string]bool{}
	for i, lc := range cfg.Limits {
		path := fmt.Sprintf("limits[%d]", i)
		l := limit{
			name:          lc.Name,
			requests:      lc.Requests,
			tiers:         lc.Tiers,
			skipMissing:   lc.OnMissing == "skip",
			failClosed:    lc.FailurePolicy == "fail_closed",
			failureStatus: lc.FailureStatus,
		}
		if l.name == "" {
			l.name = fmt.Sprintf("limit-%d", i)
		}
		if strings.ContainsAny(l.name, ": \t\r\n") {
			add(path+".name", "must not contain ':' or spaces, got %q", l.name)
		}
		if names[l.name] {
			add(path+".name", "duplicate limit name %q", l.name)
		}
		names[l.name] = true
		if l.requests < 0 || (l.requests == 0 && len(l.tiers) == 0) {
			add(path+".requests", "must be at least 1, got %d", l.requests)
		}
		for tier, n := range l.tiers {
			if n < 1 {
				add(fmt.Sprintf("%s.tiers[%q]", path, tier), "must be at least 1, got %d", n)
			}
		}
		if len(l.tiers) > 0 {
			p.needTier = true
		}
		if lc.Window == "" {
			add(path+".window", "is required (a duration such as \"1s\", \"1m\" or \"1h\")")
		} else if w, err := time.ParseDuration(lc.Window); err != nil {
			add(path+".window", "not a duration: %q", lc.Window)
		} else if w < time.Second {
			add(path+".window", "must be at least 1s, got %s", w)
		} else {
			l.window = w
		}
		switch lc.OnMissing {
		case "", "shared", "skip":
		default:
			add(path+".on_missing", "must be shared or skip, got %q", lc.OnMissing)
		}
		switch lc.FailurePolicy {
		case "", "fail_open", "fail_closed":
		default:
			add(path+".failure_policy", "must be fail_open or fail_closed, got %q", lc.FailurePolicy)
		}
		if l.failureStatus == 0 {
			l.failureStatus = 503
		}
		if l.failureStatus < 400 || l.failureStatus > 599 {
			add(path+".failure_status", "must be a 4xx or 5xx status, got %d", l.failureStatus)
		}
		parts := lc.Key
		if len(parts) == 0 {
			parts = []string{"client_ip"}
		}
		for j, s := range parts {
			kp, err := parseKeyPart(s)
			if err != nil {
				add(fmt.Sprintf("%s.key[%d]", path, j), "%v", err)
				continue
			}
			l.key = append(l.key, kp)
		}
		l.prefix = "rate-limit:" + l.name + ":"
		p.limits = append(p.limits, l)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// parseKeyPart parses one key part name.
func parseKeyPart(s string) (keyPart, error) {
	switch {
	case s == "client_ip":
		return keyPart{kind: keyClientIP}, nil
	case s == "route":
		return keyPart{kind: keyRoute}, nil
	case s == "consumer":
		return keyPart{kind: keyValue, name: "consumer"}, nil
	case strings.HasPrefix(s, "jwt.") && len(s) > len("jwt."):
		return keyPart{kind: keyValue, name: s}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if ok && name != "" {
		switch kind {
		case "header":
			return keyPart{kind: keyHeader, name: name}, nil
		case "value":
			return keyPart{kind: keyValue, name: name}, nil
		case "property":
			return keyPart{kind: keyProperty, name: name}, nil
		}
	}
	return keyPart{}, fmt.Errorf("unknown key part %q (want client_ip, route, consumer, jwt.<claim>, header:<name>, value:<name> or property:<name>)", s)
}
