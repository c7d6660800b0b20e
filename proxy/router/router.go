// Package router compiles the route table of a config and matches requests
// against it: host (exact and wildcard), path (exact, prefix, regex), method,
// headers, API versions and weighted cluster splits. A Table is immutable.
package router

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Route is a compiled route. Chain holds whatever the caller attached to it
// (the proxy attaches its filter chain); the router never looks inside.
type Route struct {
	// Name of the route.
	Name string
	// Index of the route in the config.
	Index int
	// Config is the route as configured.
	Config *config.Route
	// Chain is attached by the caller after compilation.
	Chain any

	listeners map[string]bool
	hosts     []hostMatcher
	pathKind  pathKind
	path      string
	pathRE    *regexp.Regexp
	methods   []string
	headers   []headerMatcher
	rewrite   *regexp.Regexp
	versions  []version
	weights   []weighted
	total     int
}

type pathKind int

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type hostMatcher struct {
	exact  string
	suffix string // ".example.com" for "*.example.com"
}

type headerMatcher struct {
	name    string
	exact   string
	re      *regexp.Regexp
	present *bool
}

type version struct {
	name, prefix, header, cluster string
}

type weighted struct {
	cluster string
	weight  int
}

// Table is an ordered list of compiled routes.
type Table struct {
	routes []*Route
}

// Compile builds a Table from the config's routes. The config must have been
// validated; Compile still returns an error for anything it cannot compile.
func Compile(routes []config.Route) (*Table, error) {
	t := &Table{routes: make([]*Route, 0, len(routes))}
	for i := range routes {
		rc := &routes[i]
		r := &Route{Name: rc.Name, Index: i, Config: rc}
		if r.Name == "" {
			r.Name = fmt.Sprintf("route-%d", i)
		}
		if len(rc.Listeners) > 0 {
			r.listeners = map[string]bool{}
			for _, l := range rc.Listeners {
				r.listeners[l] = true
			}
		}
		for _, h := range rc.Match.Hosts {
			h = strings.ToLower(h)
			if strings.HasPrefix(h, "*.") {
				r.hosts = append(r.hosts, hostMatcher{suffix: h[1:]})
			} else {
				r.hosts = append(r.hosts, hostMatcher{exact: h})
			}
		}
		p := rc.Match.Path
		switch {
		case p.Exact != "":
			r.pathKind, r.path = pathExact, p.Exact
		case p.Prefix != "":
			r.pathKind, r.path = pathPrefix, p.Prefix
		case p.Regex != "":
			re, err := regexp.Compile(p.Regex)
			if err != nil {
				return nil, fmt.Errorf("router: routes[%d].match.path.regex: %w", i, err)
			}
			r.pathKind, r.pathRE = pathRegex, re
		}
		r.methods = rc.Match.Methods
		for _, h := range rc.Match.Headers {
			hm := headerMatcher{name: http.CanonicalHeaderKey(h.Name), exact: h.Exact, present: h.Present}
			if h.Regex != "" {
				re, err := regexp.Compile(h.Regex)
				if err != nil {
					return nil, fmt.Errorf("router: routes[%d] header %q: %w", i, h.Name, err)
				}
				hm.re = re
			}
			r.headers = append(r.headers, hm)
		}
		if rw := rc.RewritePath; rw != nil {
			re, err := regexp.Compile(rw.Regex)
			if err != nil {
				return nil, fmt.Errorf("router: routes[%d].rewrite_path: %w", i, err)
			}
			r.rewrite = re
		}
		for _, v := range rc.Versions {
			h := v.Header
			if h == "" && v.PathPrefix == "" {
				h = "Accept-Version"
			}
			r.versions = append(r.versions, version{name: v.Name, prefix: v.PathPrefix, header: http.CanonicalHeaderKey(h), cluster: v.Cluster})
		}
		for _, w := range rc.WeightedClusters {
			r.weights = append(r.weights, weighted{w.Cluster, w.Weight})
			r.total += w.Weight
		}
		t.routes = append(t.routes, r)
	}
	return t, nil
}

// Routes returns the compiled routes in order.
func (t *Table) Routes() []*Route { return t.routes }

// Match returns the first route that matches r on listener, or nil.
func (t *Table) Match(listener string, r *http.Request) *Route {
	host := normalizeHost(r.Host)
	for _, rt := range t.routes {
		if rt.matches(listener, host, r) {
			return rt
		}
	}
	return nil
}

func (rt *Route) matches(listener, host string, r *http.Request) bool {
	if rt.listeners != nil && !rt.listeners[listener] {
		return false
	}
	if len(rt.hosts) > 0 {
		ok := false
		for _, h := range rt.hosts {
			if h.exact != "" && h.exact == host || h.suffix != "" && strings.HasSuffix(host, h.suffix) && len(host) > len(h.suffix) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	path := r.URL.Path
	switch rt.pathKind {
	case pathExact:
		if path != rt.path {
			return false
		}
	case pathPrefix:
		if !prefixMatch(path, rt.path) {
			return false
		}
	case pathRegex:
		if !rt.pathRE.MatchString(path) {
			return false
		}
	}
	if len(rt.methods) > 0 {
		ok := false
		for _, m := range rt.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, h := range rt.headers {
		vals, has := r.Header[h.name]
		if h.present != nil {
			if has != *h.present {
				return false
			}
			continue
		}
		if !has {
			return false
		}
		ok := false
		for _, v := range vals {
			if (h.exact != "" && v == h.exact) || (h.re != nil && h.re.MatchString(v)) || (h.exact == "" && h.re == nil) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// prefixMatch matches a prefix on path segment boundaries when the prefix
// does not end in '/': "/api" matches "/api" and "/api/x" but not "/apix".
func prefixMatch(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	if strings.HasSuffix(prefix, "/") || len(path) == len(prefix) {
		return true
	}
	return path[len(prefix)] == '/'
}

// Cluster picks the cluster for r: a matching API version first, then a
// weighted split, then the route's cluster. rnd returns an int in [0,n);
// nil uses math/rand.
func (rt *Route) Cluster(r *http.Request, rnd func(n int) int) string {
	for _, v := range rt.versions {
		if v.prefix != "" && prefixMatch(r.URL.Path, v.prefix) {
			return v.cluster
		}
		if v.header != "" && v.name != "" && r.Header.Get(v.header) == v.name {
			return v.cluster
		}
	}
	if rt.total > 0 {
		if rnd == nil {
			rnd = rand.IntN
		}
		n := rnd(rt.total)
		for _, w := range rt.weights {
			if n < w.weight {
				return w.cluster
			}
			n -= w.weight
		}
	}
	return rt.Config.Cluster
}

// RewritePath applies strip_prefix and rewrite_path to path.
func (rt *Route) RewritePath(path string) string {
	if sp := rt.Config.StripPrefix; sp != "" && strings.HasPrefix(path, sp) {
		path = path[len(sp):]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
	}
	if rt.rewrite != nil {
		path = rt.rewrite.ReplaceAllString(path, rt.Config.RewritePath.Replacement)
	}
	return path
}

// Rewrites reports whether the route changes the path.
func (rt *Route) Rewrites() bool { return rt.Config.StripPrefix != "" || rt.rewrite != nil }

func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
