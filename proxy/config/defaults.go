package config

import (
	"path/filepath"
	"time"
)

// ApplyDefaults fills unset fields with the defaults of the config's mode.
func (c *Config) ApplyDefaults() {
	if c.Mode == "" {
		c.Mode = ModeEdge
	}
	if c.Admin.Address == "" {
		c.Admin.Address = "127.0.0.1:9901"
	}
	if c.Logging.Level == "" {
		c.Logging.Level = "info"
	}
	if c.Logging.Format == "" {
		c.Logging.Format = "json"
	}
	if c.Logging.AccessLog.Enabled == nil {
		t := true
		c.Logging.AccessLog.Enabled = &t
	}
	if c.Logging.AccessLog.Sample == 0 {
		c.Logging.AccessLog.Sample = 1
	}
	if c.Store.Kind == "" {
		c.Store.Kind = "memory"
	}
	if r := c.Store.Redis; r != nil {
		if r.Timeout == 0 {
			r.Timeout = 50 * time.Millisecond
		}
		if r.FailurePolicy == "" {
			r.FailurePolicy = "fail_open"
		}
	}
	if c.Wasm.MemoryLimitMiB == 0 {
		// Measured: shipped plugins grow to 5-9 MiB; a guest editing a 4 MiB
		// body needs about 20. Memory is committed only as a guest grows.
		c.Wasm.MemoryLimitMiB = 32
	}
	if c.Wasm.CallTimeout == 0 {
		c.Wasm.CallTimeout = 20 * time.Millisecond
		// A guest's store calls run inside its call and share its deadline:
		// leave room for a few Redis round trips, so that a slow Redis gets
		// the store's failure policy rather than the filter's.
		if c.Store.Kind == "redis" && c.Store.Redis != nil {
			c.Wasm.CallTimeout += 4 * c.Store.Redis.Timeout
		}
	}
	if c.Wasm.InitTimeout == 0 {
		c.Wasm.InitTimeout = 30 * time.Second
	}
	if c.Wasm.PoolWait == 0 {
		c.Wasm.PoolWait = 50 * time.Millisecond
	}
	if c.Limits.MaxHeaderBytes == 0 {
		c.Limits.MaxHeaderBytes = 64 << 10
	}
	if c.Limits.ReadHeaderTimeout == 0 {
		c.Limits.ReadHeaderTimeout = 10 * time.Second
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = 120 * time.Second
	}
	if c.Limits.BodyBufferBytes == 0 {
		c.Limits.BodyBufferBytes = 4 << 20
	}
	c.Paths.applyDefaults()
	if c.Shutdown.DrainTimeout == 0 {
		c.Shutdown.DrainTimeout = 15 * time.Second
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Role == "" {
			if c.Mode == ModeSidecar {
				l.Role = "inbound"
			} else {
				l.Role = "public"
			}
		}
		if l.HTTP2 == nil {
			t := true
			l.HTTP2 = &t
		}
		if l.TLS != nil && l.TLS.MinVersion == "" {
			l.TLS.MinVersion = "1.2"
		}
		if l.TLS != nil && l.TLS.ClientAuth == "" {
			l.TLS.ClientAuth = "none"
		}
		if h := l.HTTP3; h != nil {
			if h.Enabled == nil {
				t := true
				h.Enabled = &t
			}
			if h.MaxStreams == 0 {
				h.MaxStreams = 100
			}
			if h.IdleTimeout == 0 {
				h.IdleTimeout = 30 * time.Second
			}
			if h.AltSvcMaxAge == 0 {
				h.AltSvcMaxAge = 24 * time.Hour
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Timeout == 0 {
			r.Timeout = 30 * time.Second
		}
	}
	for i := range c.Clusters {
		defaultCluster(&c.Clusters[i])
	}
	c.defaultFilters(c.DefaultFilters)
	for i := range c.Routes {
		c.defaultFilters(c.Routes[i].Filters)
	}
	c.applyMeshDefaults()
}

func defaultCluster(cl *Cluster) {
	if cl.Balancer == "" {
		cl.Balancer = "round_robin"
	}
	if cl.Protocol == "" {
		cl.Protocol = "http1"
	}
	if cl.ConnectTimeout == 0 {
		cl.ConnectTimeout = 2 * time.Second
	}
	if cl.MaxIdleConns == 0 {
		cl.MaxIdleConns = 256
	}
	if cl.DNSRefresh == 0 {
		cl.DNSRefresh = 30 * time.Second
	}
	for j := range cl.Endpoints {
		if cl.Endpoints[j].Weight == 0 {
			cl.Endpoints[j].Weight = 1
		}
	}
	if h := cl.HealthCheck; h != nil {
		if h.Path == "" {
			h.Path = "/healthz"
		}
		if h.Interval == 0 {
			h.Interval = 5 * time.Second
		}
		if h.Timeout == 0 {
			h.Timeout = time.Second
		}
		if h.HealthyThreshold == 0 {
			h.HealthyThreshold = 2
		}
		if h.UnhealthyThreshold == 0 {
			h.UnhealthyThreshold = 3
		}
	}
	if o := cl.Outlier; o != nil {
		if o.Consecutive5xx == 0 {
			o.Consecutive5xx = 5
		}
		if o.ConsecutiveConnectErrors == 0 {
			o.ConsecutiveConnectErrors = 3
		}
		if o.BaseEjection == 0 {
			o.BaseEjection = 30 * time.Second
		}
		if o.MaxEjectionPercent == 0 {
			o.MaxEjectionPercent = 50
		}
	}
	if b := cl.CircuitBreaker; b != nil {
		if b.MaxRequests == 0 {
			b.MaxRequests = 1024
		}
		if b.PendingTimeout == 0 {
			b.PendingTimeout = time.Second
		}
	}
	if b := cl.RetryBudget; b != nil {
		if b.Percent == 0 {
			b.Percent = 20
		}
		if b.MinRetryConcurrency == 0 {
			b.MinRetryConcurrency = 3
		}
	}
}

func (c *Config) defaultFilters(fs []Filter) {
	for i := range fs {
		f := &fs[i]
		if f.Kind == "" && f.Plugin != "" {
			f.Kind = "wasm"
		}
		if f.Name == "" && f.Plugin != "" {
			base := filepath.Base(f.Plugin)
			f.Name = base[:len(base)-len(filepath.Ext(base))]
		}
		if f.FailurePolicy == "" {
			f.FailurePolicy = "fail_closed"
		}
	}
}

// Resolve returns p relative to the config file's directory, unless absolute.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}
