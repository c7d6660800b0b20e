package config

import (
	"fmt"
	"strings"
)

// validateClusterPolicies checks the numbers of a cluster's endpoints and
// policies (after defaults), so proxy/upstream never sees a negative
// duration, an out-of-range percentage or a zero threshold.
func validateClusterPolicies(p *problems, path string, cl *Cluster) {
	for j, e := range cl.Endpoints {
		if e.Weight < 1 || e.Weight > 1000 {
			p.add(fmt.Sprintf("%s.endpoints[%d].weight", path, j), "must be between 1 and 1000, got %d", e.Weight)
		}
	}
	if cl.DNSRefresh < 0 || cl.ConnectTimeout < 0 || cl.MaxIdleConns < 0 {
		p.add(path, "dns_refresh, connect_timeout and max_idle_conns must not be negative")
	}
	if h := cl.HealthCheck; h != nil {
		hp := path + ".health_check"
		if !strings.HasPrefix(h.Path, "/") {
			p.add(hp+".path", "must start with /, got %q", h.Path)
		}
		if h.Interval <= 0 || h.Timeout <= 0 {
			p.add(hp, "interval and timeout must be positive")
		}
		if h.HealthyThreshold < 1 || h.UnhealthyThreshold < 1 {
			p.add(hp, "healthy_threshold and unhealthy_threshold must be at least 1")
		}
	}
	if o := cl.Outlier; o != nil {
		op := path + ".outlier"
		if o.Consecutive5xx < 1 || o.ConsecutiveConnectErrors < 1 || o.BaseEjection <= 0 {
			p.add(op, "consecutive_5xx, consecutive_connect_errors and base_ejection must be positive")
		}
		if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
			p.add(op+".max_ejection_percent", "must be in [0, 100], got %d", o.MaxEjectionPercent)
		}
	}
	if b := cl.CircuitBreaker; b != nil && (b.MaxRequests < 1 || b.MaxPending < 0 || b.PendingTimeout <= 0) {
		p.add(path+".circuit_breaker", "max_requests must be at least 1, max_pending not negative, pending_timeout positive")
	}
	if b := cl.RetryBudget; b != nil && b.MinRetryConcurrency < 0 {
		p.add(path+".retry_budget.min_retry_concurrency", "must not be negative")
	}
	if r := cl.Retry; r != nil && (r.PerTryTimeout < 0 || r.Backoff < 0) {
		p.add(path+".retry", "per_try_timeout and backoff must not be negative")
	}
}
