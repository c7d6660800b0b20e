package config

import "time"

// Cluster is an upstream service.
type Cluster struct {
	// Name referenced by routes.
	Name string `yaml:"name"`
	// Endpoints are host:port; hostnames are resolved by DNS and re-resolved.
	Endpoints []Endpoint `yaml:"endpoints"`
	// DNSRefresh is how often hostnames are re-resolved. Default 30s.
	DNSRefresh time.Duration `yaml:"dns_refresh"`
	// Balancer is round_robin (default), least_request, p2c or consistent_hash.
	Balancer string `yaml:"balancer"`
	// Hash selects the key for consistent_hash.
	Hash *HashPolicy `yaml:"hash"`
	// Protocol to the upstream: http1 (default), h2, h2c, h3, or auto: the
	// protocol the request arrived with (HTTP/1 -> http1; HTTP/2 and HTTP/3
	// -> h2 with tls, h2c without), Envoy's USE_DOWNSTREAM_PROTOCOL.
	Protocol string `yaml:"protocol"`
	// TLS to the upstream.
	TLS *UpstreamTLS `yaml:"tls"`
	// ConnectTimeout bounds dialing. Default 2s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxIdleConns per endpoint. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// HealthCheck enables active health checking.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// Outlier enables passive outlier ejection.
	Outlier *Outlier `yaml:"outlier"`
	// CircuitBreaker caps concurrency.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker"`
	// Retry is the cluster's default retry policy.
	Retry *Retry `yaml:"retry"`
	// RetryBudget caps retries to a share of traffic.
	RetryBudget *RetryBudget `yaml:"retry_budget"`
}

// Endpoint is one upstream address.
type Endpoint struct {
	// Address is host:port.
	Address string `yaml:"address"`
	// Weight for weighted balancing. Default 1.
	Weight int `yaml:"weight"`
}

// UnmarshalYAML accepts "host:port" as a shorthand for {address: host:port}.
func (e *Endpoint) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		e.Address = s
		return nil
	}
	type plain Endpoint
	return unmarshal((*plain)(e))
}

// HashPolicy selects the consistent-hash key.
type HashPolicy struct {
	// Header name to hash.
	Header string `yaml:"header"`
	// Cookie name to hash.
	Cookie string `yaml:"cookie"`
	// ClientIP hashes the client address.
	ClientIP bool `yaml:"client_ip"`
}

// UpstreamTLS is TLS (or mTLS) towards an upstream.
type UpstreamTLS struct {
	// CAFile verifies the upstream; empty uses the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides SNI and the name verified.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CertFile and KeyFile are the client certificate for mTLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SPIFFEID, when set, is the identity the upstream must present (URI SAN)
	// instead of a hostname check.
	SPIFFEID string `yaml:"spiffe_id"`
}

// HealthCheck is an active HTTP health check.
type HealthCheck struct {
	Path               string        `yaml:"path"`
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	HealthyThreshold   int           `yaml:"healthy_threshold"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"`
}

// Outlier is passive outlier ejection.
type Outlier struct {
	// Consecutive5xx ejects after this many 5xx in a row. Default 5.
	Consecutive5xx int `yaml:"consecutive_5xx"`
	// ConsecutiveConnectErrors ejects after this many connect errors. Default 3.
	ConsecutiveConnectErrors int `yaml:"consecutive_connect_errors"`
	// BaseEjection is the first ejection time, multiplied by the ejection count. Default 30s.
	BaseEjection time.Duration `yaml:"base_ejection"`
	// MaxEjectionPercent caps ejected endpoints. Default 50.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// CircuitBreaker caps concurrency per cluster.
type CircuitBreaker struct {
	// MaxRequests in flight. Default 1024.
	MaxRequests int `yaml:"max_requests"`
	// MaxPending waiting for a slot; beyond it requests get a fast 503. Default 0.
	MaxPending int `yaml:"max_pending"`
	// PendingTimeout bounds the wait for a slot. Default 1s.
	PendingTimeout time.Duration `yaml:"pending_timeout"`
}

// RetryBudget caps retries.
type RetryBudget struct {
	// Percent of active requests that may be retries. Default 20.
	Percent float64 `yaml:"percent"`
	// MinRetryConcurrency always allowed. Default 3.
	MinRetryConcurrency int `yaml:"min_retry_concurrency"`
}
