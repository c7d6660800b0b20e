// Package upstream sends proxied requests to upstream clusters: endpoint
// discovery (static and DNS), load balancing, active health checks, passive
// outlier ejection, timeouts, retries with a budget, circuit breaking and
// traffic mirroring. A *Cluster is an http.RoundTripper for
// httputil.ReverseProxy; a *Set holds the clusters of one config snapshot.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Resolver looks up host names; *net.Resolver implements it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options configure a Set.
type Options struct {
	// Logger receives the set's logs; nil discards them.
	Logger *zap.Logger
	// Metrics are the process-wide upstream metrics (see NewMetrics); nil
	// uses unregistered metrics.
	Metrics *Metrics
	// TLSConfig, when set, is asked first for each cluster's client TLS
	// config (the mesh injects mTLS here). Returning (nil, nil) falls back to
	// the cluster's tls block, or plaintext when there is none.
	TLSConfig func(config.Cluster) (*tls.Config, error)
	// Resolve maps file paths of tls blocks (relative to the config file);
	// nil uses them as given. Pass (*config.Config).Resolve.
	Resolve func(path string) string
	// Resolver resolves endpoint host names; nil uses net.DefaultResolver.
	Resolver Resolver
	// MirrorMaxInFlight caps the mirrored requests in flight per shadow
	// cluster; more are dropped and counted. Default 64.
	MirrorMaxInFlight int
	// MirrorTimeout bounds one mirrored request. Default 10s.
	MirrorTimeout time.Duration
}

// Set is the upstream clusters of one config snapshot. It owns their health
// checkers, DNS refreshers, transports and mirror goroutines until Close.
type Set struct {
	clusters map[string]*Cluster
	ordered  []*Cluster
	log      *zap.Logger
	metrics  *Metrics
	opts     Options

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	goMu   sync.RWMutex // orders mirror goroutine starts before Close's Wait
	closed bool
}

// NewSet builds the clusters and starts their background work (initial DNS
// resolution happens here, bounded by ctx; later work runs until Close). The
// clusters must have been defaulted and validated by the config package.
func NewSet(ctx context.Context, clusters []config.Cluster, opts Options) (*Set, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		m, err := NewMetrics(nil)
		if err != nil {
			return nil, err
		}
		opts.Metrics = m
	}
	if opts.Resolve == nil {
		opts.Resolve = func(p string) string { return p }
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.MirrorMaxInFlight <= 0 {
		opts.MirrorMaxInFlight = 64
	}
	if opts.MirrorTimeout <= 0 {
		opts.MirrorTimeout = 10 * time.Second
	}
	s := &Set{
		clusters: make(map[string]*Cluster, len(clusters)),
		log:      opts.Logger.Named("upstream"),
		metrics:  opts.Metrics,
		opts:     opts,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var errs []error
	for i := range clusters {
		c, err := s.newCluster(ctx, clusters[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("clusters[%d] %q: %w", i, clusters[i].Name, err))
			continue
		}
		if _, dup := s.clusters[c.name]; dup {
			errs = append(errs, fmt.Errorf("clusters[%d]: duplicate name %q", i, c.name))
			continue
		}
		s.clusters[c.name] = c
		s.ordered = append(s.ordered, c)
	}
	if err := errors.Join(errs...); err != nil {
		s.cancel()
		for _, c := range s.ordered {
			c.closeRT()
		}
		return nil, fmt.Errorf("upstream: %w", err)
	}
	for _, c := range s.ordered {
		s.start(c)
	}
	s.metrics.add(s)
	return s, nil
}

func (s *Set) newCluster(ctx context.Context, cfg config.Cluster) (*Cluster, error) {
	c := &Cluster{
		name:        cfg.Name,
		cfg:         cfg,
		balancer:    cfg.Balancer,
		hash:        cfg.Hash,
		retry:       cfg.Retry,
		outlier:     cfg.Outlier,
		breaker:     newBreaker(cfg.CircuitBreaker),
		log:         s.log.With(zap.String("cluster", cfg.Name)),
		m:           s.metrics.bind(cfg.Name),
		budget:      config.RetryBudget{Percent: 20, MinRetryConcurrency: 3},
		mirrorSlots: make(chan struct{}, s.opts.MirrorMaxInFlight),
	}
	if c.balancer == "" {
		c.balancer = RoundRobin
	}
	if cfg.ConnectTimeout <= 0 {
		c.cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.MaxIdleConns <= 0 {
		c.cfg.MaxIdleConns = 256
	}
	if b := cfg.RetryBudget; b != nil {
		c.budget = *b
	}
	if o := c.outlier; o != nil && (o.Consecutive5xx <= 0 || o.ConsecutiveConnectErrors <= 0 || o.BaseEjection <= 0) {
		return nil, errors.New("outlier: thresholds and base_ejection must be positive (apply config defaults)")
	}
	var tlsCfg *tls.Config
	var err error
	if s.opts.TLSConfig != nil {
		if tlsCfg, err = s.opts.TLSConfig(cfg); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	if tlsCfg == nil && cfg.TLS != nil {
		if tlsCfg, err = buildTLS(cfg.TLS, s.opts.Resolve); err != nil {
			return nil, err
		}
	}
	if tlsCfg != nil {
		c.serverName = tlsCfg.ServerName
	}
	c.tab.Store(&table{})
	if c.sources, err = parseSources(cfg.Endpoints); err != nil {
		return nil, err
	}
	if err := c.buildTransport(tlsCfg); err != nil {
		return nil, err
	}
	all := c.resolve(ctx, s.opts.Resolver)
	c.mu.Lock()
	c.setEndpointsLocked(all)
	c.mu.Unlock()
	return c, nil
}

// start launches the cluster's health checker and DNS refresher.
func (s *Set) start(c *Cluster) {
	if c.cfg.HealthCheck != nil {
		s.wg.Go(func() { c.healthLoop(s.ctx) })
	}
	if c.hasNames() {
		s.wg.Go(func() { c.dnsLoop(s.ctx, s.opts.Resolver) })
	}
}

// Cluster returns the named cluster, or nil.
func (s *Set) Cluster(name string) *Cluster {
	return s.clusters[name]
}

// Clusters returns the clusters in config order.
func (s *Set) Clusters() []*Cluster { return s.ordered }

// Close stops health checkers, DNS refreshers and mirrors, and closes idle
// connections. Requests still in flight keep their connections. It waits for
// the background goroutines until ctx ends.
func (s *Set) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.goMu.Lock()
		s.closed = true
		s.goMu.Unlock()
		s.cancel()
		s.metrics.remove(s)
		for _, c := range s.ordered {
			c.mu.Lock()
			c.closed = true
			for _, e := range c.tab.Load().all {
				if e.ejectTimer != nil {
					e.ejectTimer.Stop()
				}
			}
			c.mu.Unlock()
		}
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("upstream: close: %w", ctx.Err())
		}
		for _, c := range s.ordered {
			c.closeRT()
		}
	})
	return err
}

// ClusterStatus is a cluster's live state for the admin /clusters page.
type ClusterStatus struct {
	Name             string           `json:"name"`
	Balancer         string           `json:"balancer"`
	Protocol         string           `json:"protocol"`
	ActiveRequests   int64            `json:"active_requests"`
	RetryingRequests int64            `json:"retrying_requests"`
	PendingRequests  int64            `json:"pending_requests"`
	Breaker          string           `json:"breaker"`
	Endpoints        []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint's live state.
type EndpointStatus struct {
	Address        string     `json:"address"`
	Hostname       string     `json:"hostname,omitempty"`
	Weight         int        `json:"weight"`
	Healthy        bool       `json:"healthy"`      // receives traffic now
	HealthCheck    string     `json:"health_check"` // passing, failing or disabled
	Ejected        bool       `json:"ejected"`
	EjectedUntil   *time.Time `json:"ejected_until,omitempty"`
	Ejections      int        `json:"ejections"`
	ActiveRequests int64      `json:"active_requests"`
}

// Status returns every cluster's state, in config order.
func (s *Set) Status() []ClusterStatus {
	out := make([]ClusterStatus, 0, len(s.ordered))
	now := nowNano()
	for _, c := range s.ordered {
		cs := ClusterStatus{
			Name:             c.name,
			Balancer:         c.balancer,
			Protocol:         c.cfg.Protocol,
			ActiveRequests:   c.active.Load(),
			RetryingRequests: c.retrying.Load(),
			PendingRequests:  c.breaker.waiting(),
			Breaker:          c.breaker.state(),
			Endpoints:        []EndpointStatus{},
		}
		c.mu.Lock()
		for _, e := range c.tab.Load().all {
			es := EndpointStatus{
				Address:        e.addr,
				Hostname:       e.hostname,
				Weight:         e.weight,
				Healthy:        e.available(now),
				HealthCheck:    "disabled",
				Ejections:      e.ejections,
				ActiveRequests: e.active.Load(),
			}
			if c.cfg.HealthCheck != nil {
				es.HealthCheck = "failing"
				if e.hcUp.Load() {
					es.HealthCheck = "passing"
				}
			}
			if u := e.ejectedUntil.Load(); u > now {
				t := time.Unix(0, u).UTC()
				es.Ejected, es.EjectedUntil = true, &t
			}
			cs.Endpoints = append(cs.Endpoints, es)
		}
		c.mu.Unlock()
		out = append(out, cs)
	}
	return out
}
