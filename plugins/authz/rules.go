package main

import (
	"errors"
	"fmt"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"github.com/wasmgate/wasmgate/sdk"
)

// Actions of a rule.
const (
	actionAllow = "allow"
	actionDeny  = "deny"
)

// Config is the authz plugin config (JSON; YAML in the proxy config).
type Config struct {
	// Rules are tried in order; the first rule whose conditions all match
	// decides.
	Rules []Rule `json:"rules"`
	// Default is the action when no rule matches: "deny" (default) or "allow".
	Default string `json:"default"`
	// DryRun logs and counts what would be denied but lets it through.
	DryRun bool `json:"dry_run"`
	// DenyStatus is the status of a denial. Default 403.
	DenyStatus int `json:"deny_status"`
}

// Rule is one ordered rule. Every condition that is set must match; within
// a list any entry may match (except Scopes, where all are required).
type Rule struct {
	// Name is reported in denials and logs. Default "rule-<index>".
	Name string `json:"name"`
	// Action is "allow" or "deny". Required.
	Action string `json:"action"`
	// Authenticated, when true, needs some principal (peer id, jwt.sub or
	// consumer); when false, needs none.
	Authenticated *bool `json:"authenticated"`
	// PeerIDs are globs over the mTLS peer's SPIFFE ID (property peer_id),
	// e.g. "spiffe://mesh.local/ns/shop/sa/*".
	PeerIDs []string `json:"peer_ids"`
	// Subjects are globs over the JWT subject (value jwt.sub).
	Subjects []string `json:"subjects"`
	// Consumers are globs over the api-key consumer (value consumer).
	Consumers []string `json:"consumers"`
	// Scopes must all be in the JWT scope (value jwt.scope, space-separated).
	Scopes []string `json:"scopes"`
	// Roles: one of them must be in the JWT roles (value jwt.roles).
	Roles []string `json:"roles"`
	// Values are globs over any per-request value, e.g. {"tier": ["gold"]}
	// or {"jwt.tenant": ["acme"]}; a space-separated value matches when one
	// of its words does.
	Values map[string][]string `json:"values"`
	// Methods are HTTP methods (case-insensitive).
	Methods []string `json:"methods"`
	// PathPrefixes match the start of the canonical path.
	PathPrefixes []string `json:"path_prefixes"`
	// Paths are globs over the canonical path: "*" is one segment, "**"
	// any number of segments, e.g. "/v1/users/*/orders/**".
	Paths []string `json:"paths"`
	// Headers are globs over request header values ("*" any value, but the
	// header must be present).
	Headers map[string]string `json:"headers"`
}

// request is what a rule is matched against.
type request struct {
	method string
	// path is the canonical path.
	path   string
	peerID string
	header func(name string) (string, bool)
	value  func(key string) (string, bool)
}

// decision is the outcome of evaluating the rules.
type decision struct {
	allow  bool
	rule   string
	reason string
}

type policy struct {
	rules       []Rule
	defaultDeny bool
	dryRun      bool
	status      int
}

// parseConfig decodes and validates a config, joining every problem with
// its field path.
func parseConfig(data []byte) (*policy, error) {
	var c Config
	if err := sdk.DecodeConfig(data, &c); err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	p, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("authz: config: %w", err)
	}
	return p, nil
}

func (c *Config) compile() (*policy, error) {
	var errs []error
	p := &policy{rules: c.Rules, defaultDeny: true, dryRun: c.DryRun, status: c.DenyStatus}
	switch c.Default {
	case "", actionDeny:
	case actionAllow:
		p.defaultDeny = false
	default:
		errs = append(errs, fmt.Errorf("default: %q is not allow or deny", c.Default))
	}
	if p.status == 0 {
		p.status = 403
	}
	if p.status < 400 || p.status > 599 {
		errs = append(errs, fmt.Errorf("deny_status: %d is not a 4xx or 5xx status", p.status))
	}
	names := map[string]int{}
	for i := range p.rules {
		r := &p.rules[i]
		at := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			r.Name = "rule-" + strconv.Itoa(i)
		}
		if j, dup := names[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q already used by rules[%d]", at, r.Name, j))
		}
		names[r.Name] = i
		if r.Action != actionAllow && r.Action != actionDeny {
			errs = append(errs, fmt.Errorf("%s.action: %q is not allow or deny", at, r.Action))
		}
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
			if m == "" {
				errs = append(errs, fmt.Errorf("%s.methods[%d]: empty", at, j))
			}
		}
		for j, pp := range r.PathPrefixes {
			if !strings.HasPrefix(pp, "/") {
				errs = append(errs, fmt.Errorf("%s.path_prefixes[%d]: %q must start with /", at, j, pp))
			}
		}
		for j, pp := range r.Paths {
			if !strings.HasPrefix(pp, "/") {
				errs = append(errs, fmt.Errorf("%s.paths[%d]: %q must start with /", at, j, pp))
			}
		}
		if len(r.Headers) > 0 {
			h := make(map[string]string, len(r.Headers))
			for k, v := range r.Headers {
				if k == "" {
					errs = append(errs, fmt.Errorf("%s.headers: empty header name", at))
				}
				h[textproto.CanonicalMIMEHeaderKey(k)] = v
			}
			r.Headers = h
		}
		for k := range r.Values {
			if k == "" {
				errs = append(errs, fmt.Errorf("%s.values: empty value name", at))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// evaluate runs the rules on a request.
func (p *policy) evaluate(r *request) decision {
	for i := range p.rules {
		rule := &p.rules[i]
		if !rule.matches(r) {
			continue
		}
		if rule.Action == actionAllow {
			return decision{allow: true, rule: rule.Name, reason: "allowed by rule " + rule.Name}
		}
		return decision{rule: rule.Name, reason: "denied by rule " + rule.Name}
	}
	if p.defaultDeny {
		return decision{reason: "no rule allows this request"}
	}
	return decision{allow: true, reason: "allowed by default"}
}

func (rule *Rule) matches(r *request) bool {
	if len(rule.Methods) > 0 && !contains(rule.Methods, r.method) {
		return false
	}
	if len(rule.PathPrefixes) > 0 && !anyOf(rule.PathPrefixes, func(p string) bool { return strings.HasPrefix(r.path, p) }) {
		return false
	}
	if len(rule.Paths) > 0 && !anyOf(rule.Paths, func(p string) bool { return globMatch(p, r.path, '/') }) {
		return false
	}
	for name, pat := range rule.Headers {
		v, ok := r.header(name)
		if !ok || !globMatch(pat, v, 0) {
			return false
		}
	}
	if rule.Authenticated != nil {
		_, sub := r.value("jwt.sub")
		_, con := r.value("consumer")
		if (r.peerID != "" || sub || con) != *rule.Authenticated {
			return false
		}
	}
	if len(rule.PeerIDs) > 0 && (r.peerID == "" || !anyOf(rule.PeerIDs, func(p string) bool { return globMatch(p, r.peerID, '/') })) {
		return false
	}
	if len(rule.Subjects) > 0 && !valueMatches(r, "jwt.sub", rule.Subjects, false) {
		return false
	}
	if len(rule.Consumers) > 0 && !valueMatches(r, "consumer", rule.Consumers, false) {
		return false
	}
	if len(rule.Roles) > 0 && !valueMatches(r, "jwt.roles", rule.Roles, true) {
		return false
	}
	if len(rule.Scopes) > 0 {
		v, ok := r.value("jwt.scope")
		if !ok {
			v, ok = r.value("jwt.scp")
		}
		if !ok {
			return false
		}
		have := strings.Fields(v)
		for _, s := range rule.Scopes {
			if !contains(have, s) {
				return false
			}
		}
	}
	for _, key := range sortedKeys(rule.Values) {
		if !valueMatches(r, key, rule.Values[key], true) {
			return false
		}
	}
	return true
}

// valueMatches matches a per-request value against globs; with words, a
// space-separated value matches when any of its words does.
func valueMatches(r *request, key string, globs []string, words bool) bool {
	v, ok := r.value(key)
	if !ok || v == "" {
		return false
	}
	cands := []string{v}
	if words {
		cands = append(cands, strings.Fields(v)...)
	}
	for _, c := range cands {
		for _, g := range globs {
			if globMatch(g, c, 0) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func anyOf(list []string, f func(string) bool) bool {
	for _, v := range list {
		if f(v) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string][]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
