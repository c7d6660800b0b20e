package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Validate checks the whole config and returns every problem, each with its
// field path, joined.
func (c *Config) Validate() error {
	var p problems
	switch c.Mode {
	case ModeEdge, ModeSidecar:
	default:
		p.add("mode", "must be edge or sidecar, got %q", c.Mode)
	}
	if c.Admin.Address != "off" {
		checkAddr(&p, "admin.address", c.Admin.Address)
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("logging.level", "must be debug, info, warn or error, got %q", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "json", "console":
	default:
		p.add("logging.format", "must be json or console, got %q", c.Logging.Format)
	}
	if s := c.Logging.AccessLog.Sample; s <= 0 || s > 1 {
		p.add("logging.access_log.sample", "must be in (0, 1], got %v", s)
	}
	switch c.Store.Kind {
	case "memory":
	case "redis":
		if c.Store.Redis == nil || c.Store.Redis.Address == "" {
			p.add("store.redis.address", "is required when store.kind is redis")
		} else {
			checkAddr(&p, "store.redis.address", c.Store.Redis.Address)
		}
		if c.Store.Redis != nil && c.Store.Redis.FailurePolicy != "fail_open" && c.Store.Redis.FailurePolicy != "fail_closed" {
			p.add("store.redis.failure_policy", "must be fail_open or fail_closed, got %q", c.Store.Redis.FailurePolicy)
		}
	default:
		p.add("store.kind", "must be memory or redis, got %q", c.Store.Kind)
	}
	if c.Wasm.CallTimeout < 0 || c.Wasm.PoolWait < 0 || c.Wasm.PoolSize < 0 {
		p.add("wasm", "timeouts and pool_size must not be negative")
	}
	c.Paths.validate(&p)
	if c.Limits.MaxHeaderBytes < 1024 {
		p.add("limits.max_header_bytes", "must be at least 1024, got %d", c.Limits.MaxHeaderBytes)
	}

	listeners := map[string]bool{}
	for i, l := range c.Listeners {
		path := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			p.add(path+".name", "is required")
		} else if listeners[l.Name] {
			p.add(path+".name", "duplicate listener %q", l.Name)
		}
		listeners[l.Name] = true
		checkAddr(&p, path+".address", l.Address)
		switch l.Role {
		case "public", "inbound", "outbound":
		default:
			p.add(path+".role", "must be public, inbound or outbound, got %q", l.Role)
		}
		if t := l.TLS; t != nil {
			if len(t.Certs) == 0 {
				p.add(path+".tls.certs", "at least one certificate is required")
			}
			for j, ct := range t.Certs {
				if ct.CertFile == "" || ct.KeyFile == "" {
					p.add(fmt.Sprintf("%s.tls.certs[%d]", path, j), "cert_file and key_file are required")
				}
			}
			if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
				p.add(path+".tls.min_version", "must be 1.2 or 1.3, got %q", t.MinVersion)
			}
			switch t.ClientAuth {
			case "none", "request":
			case "require", "optional":
				if t.ClientCAFile == "" {
					p.add(path+".tls.client_ca_file", "is required when client_auth is %s", t.ClientAuth)
				}
			default:
				p.add(path+".tls.client_auth", "must be none, request, require or optional, got %q", t.ClientAuth)
			}
		}
		if l.HTTP3 != nil && *l.HTTP3.Enabled && l.TLS == nil {
			p.add(path+".http3", "needs tls on the same listener")
		}
	}
	if len(c.Listeners) == 0 && c.Mesh == nil {
		p.add("listeners", "at least one listener is required")
	}

	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		path := fmt.Sprintf("clusters[%d]", i)
		if cl.Name == "" {
			p.add(path+".name", "is required")
		} else if clusters[cl.Name] {
			p.add(path+".name", "duplicate cluster %q", cl.Name)
		}
		clusters[cl.Name] = true
		validateCluster(&p, path, &cl)
	}
	for i, l := range c.Listeners {
		if l.Upstream != "" && !clusters[l.Upstream] {
			p.add(fmt.Sprintf("listeners[%d].upstream", i), "unknown cluster %q", l.Upstream)
		}
	}

	validateFilters(&p, "default_filters", c.DefaultFilters)
	names := map[string]bool{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			if names[r.Name] {
				p.add(path+".name", "duplicate route %q", r.Name)
			}
			names[r.Name] = true
		}
		validateRoute(&p, path, &r, clusters, listeners)
	}
	c.validateMesh(&p)
	return p.err()
}

func validateRoute(p *problems, path string, r *Route, clusters, listeners map[string]bool) {
	for j, l := range r.Listeners {
		if !listeners[l] {
			p.add(fmt.Sprintf("%s.listeners[%d]", path, j), "unknown listener %q", l)
		}
	}
	m := r.Match
	n := 0
	for _, s := range []string{m.Path.Exact, m.Path.Prefix, m.Path.Regex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		p.add(path+".match.path", "set only one of exact, prefix, regex")
	}
	if m.Path.Exact != "" && !strings.HasPrefix(m.Path.Exact, "/") {
		p.add(path+".match.path.exact", "must start with /")
	}
	if m.Path.Prefix != "" && !strings.HasPrefix(m.Path.Prefix, "/") {
		p.add(path+".match.path.prefix", "must start with /")
	}
	checkRegex(p, path+".match.path.regex", m.Path.Regex)
	for j, h := range m.Hosts {
		if h == "" || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
			p.add(fmt.Sprintf("%s.match.hosts[%d]", path, j), "must be a host name or *.domain, got %q", h)
		}
	}
	for j, h := range m.Headers {
		hp := fmt.Sprintf("%s.match.headers[%d]", path, j)
		if h.Name == "" {
			p.add(hp+".name", "is required")
		}
		checkRegex(p, hp+".regex", h.Regex)
	}
	for j, meth := range m.Methods {
		if meth == "" || strings.ToUpper(meth) != meth {
			p.add(fmt.Sprintf("%s.match.methods[%d]", path, j), "must be an upper-case method, got %q", meth)
		}
	}
	if r.RewritePath != nil {
		checkRegex(p, path+".rewrite_path.regex", r.RewritePath.Regex)
		if r.RewritePath.Regex == "" {
			p.add(path+".rewrite_path.regex", "is required")
		}
	}
	targets := 0
	if r.Cluster != "" {
		targets++
		if !clusters[r.Cluster] {
			p.add(path+".cluster", "unknown cluster %q", r.Cluster)
		}
	}
	if len(r.WeightedClusters) > 0 {
		targets++
		total := 0
		for j, w := range r.WeightedClusters {
			if !clusters[w.Cluster] {
				p.add(fmt.Sprintf("%s.weighted_clusters[%d].cluster", path, j), "unknown cluster %q", w.Cluster)
			}
			if w.Weight < 0 {
				p.add(fmt.Sprintf("%s.weighted_clusters[%d].weight", path, j), "must not be negative")
			}
			total += w.Weight
		}
		if total <= 0 {
			p.add(path+".weighted_clusters", "weights must add up to more than 0")
		}
	}
	for j, v := range r.Versions {
		vp := fmt.Sprintf("%s.versions[%d]", path, j)
		if v.Cluster == "" || !clusters[v.Cluster] {
			p.add(vp+".cluster", "unknown cluster %q", v.Cluster)
		}
		if v.PathPrefix == "" && v.Name == "" {
			p.add(vp, "needs a name (matched against the version header) or a path_prefix")
		}
	}
	if r.Redirect != nil {
		targets++
		if r.Redirect.URL == "" {
			p.add(path+".redirect.url", "is required")
		}
	}
	if r.Direct != nil {
		targets++
		if r.Direct.Status < 100 || r.Direct.Status > 599 {
			p.add(path+".direct.status", "must be a valid HTTP status, got %d", r.Direct.Status)
		}
	}
	if targets == 0 && len(r.Versions) == 0 {
		p.add(path, "needs one of cluster, weighted_clusters, versions, redirect or direct")
	}
	if targets > 1 {
		p.add(path, "set only one of cluster, weighted_clusters, redirect or direct")
	}
	if r.Mirror != nil {
		if !clusters[r.Mirror.Cluster] {
			p.add(path+".mirror.cluster", "unknown cluster %q", r.Mirror.Cluster)
		}
		if r.Mirror.Percent < 0 || r.Mirror.Percent > 100 {
			p.add(path+".mirror.percent", "must be between 0 and 100")
		}
	}
	if r.Retry != nil {
		validateRetry(p, path+".retry", r.Retry)
	}
	validateFilters(p, path+".filters", r.Filters)
}

func validateCluster(p *problems, path string, cl *Cluster) {
	if len(cl.Endpoints) == 0 {
		p.add(path+".endpoints", "at least one endpoint is required")
	}
	for j, e := range cl.Endpoints {
		checkAddr(p, fmt.Sprintf("%s.endpoints[%d].address", path, j), e.Address)
	}
	switch cl.Balancer {
	case "round_robin", "least_request", "p2c", "consistent_hash":
	default:
		p.add(path+".balancer", "must be round_robin, least_request, p2c or consistent_hash, got %q", cl.Balancer)
	}
	if cl.Balancer == "consistent_hash" && (cl.Hash == nil || (cl.Hash.Header == "" && cl.Hash.Cookie == "" && !cl.Hash.ClientIP)) {
		p.add(path+".hash", "consistent_hash needs hash.header, hash.cookie or hash.client_ip")
	}
	switch cl.Protocol {
	case "http1", "h2", "h2c", "h3", "auto":
	default:
		p.add(path+".protocol", "must be http1, h2, h2c, h3 or auto, got %q", cl.Protocol)
	}
	if cl.Protocol == "h3" && cl.TLS == nil {
		p.add(path+".tls", "protocol h3 needs tls")
	}
	if t := cl.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		p.add(path+".tls", "cert_file and key_file go together")
	}
	if cl.Retry != nil {
		validateRetry(p, path+".retry", cl.Retry)
	}
	if b := cl.RetryBudget; b != nil && (b.Percent <= 0 || b.Percent > 100) {
		p.add(path+".retry_budget.percent", "must be in (0, 100]")
	}
	validateClusterPolicies(p, path, cl)
}

func validateRetry(p *problems, path string, r *Retry) {
	if r.Attempts < 0 || r.Attempts > 10 {
		p.add(path+".attempts", "must be between 1 and 10, got %d", r.Attempts)
	}
	for j, on := range r.On {
		switch on {
		case "connect-failure", "reset", "5xx", "gateway-error":
		default:
			if code, err := strconv.Atoi(on); err != nil || code < 400 || code > 599 {
				p.add(fmt.Sprintf("%s.on[%d]", path, j), "must be connect-failure, reset, 5xx, gateway-error or a 4xx/5xx code, got %q", on)
			}
		}
	}
}

func validateFilters(p *problems, path string, fs []Filter) {
	names := map[string]bool{}
	for i, f := range fs {
		fp := fmt.Sprintf("%s[%d]", path, i)
		if f.Kind == "" {
			p.add(fp+".kind", "is required when plugin is not set")
		}
		if (f.Kind == "wasm" || f.Kind == "process") && f.Plugin == "" {
			p.add(fp+".plugin", "is required for kind %s", f.Kind)
		}
		if f.Name != "" && names[f.Name] {
			p.add(fp+".name", "duplicate filter %q on the same chain", f.Name)
		}
		names[f.Name] = true
		if f.SHA256 != "" && !sha256Hex.MatchString(f.SHA256) {
			p.add(fp+".sha256", "must be 64 hex digits")
		}
		if f.FailurePolicy != "fail_closed" && f.FailurePolicy != "fail_open" {
			p.add(fp+".failure_policy", "must be fail_closed or fail_open, got %q", f.FailurePolicy)
		}
		if f.FailureStatus != 0 && (f.FailureStatus < 400 || f.FailureStatus > 599) {
			p.add(fp+".failure_status", "must be a 4xx or 5xx status, got %d", f.FailureStatus)
		}
	}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

func checkAddr(p *problems, path, addr string) {
	if addr == "" {
		p.add(path, "is required")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(path, "must be host:port, got %q", addr)
		return
	}
	_ = host
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(path, "invalid port %q", port)
	}
}

func checkRegex(p *problems, path, re string) {
	if re == "" {
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		p.add(path, "invalid regex: %v", err)
	}
}
