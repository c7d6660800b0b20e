// Package proxy is wasmgate's core: the Server that owns listeners and the
// current Snapshot, and the root handler that runs every request through
// router, filter chain and upstream.
package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/router"
	"github.com/wasmgate/wasmgate/proxy/upstream"
)

// Snapshot is one immutable, fully built config: routes with their chains
// and the clusters. Requests hold a reference for their whole life, so a
// reload never changes a request mid-flight; the snapshot is closed when it
// has been replaced and its last request ended.
type Snapshot struct {
	// Version is the sha256 of the config source (first 12 hex digits).
	Version string
	// Config is the config this snapshot was built from.
	Config *config.Config
	// Table is the compiled route table; each Route.Chain is a *filter.Chain.
	Table *router.Table
	// Upstreams are the clusters.
	Upstreams *upstream.Set
	// Built is when the snapshot was built.
	Built time.Time
	// Files are the files this snapshot read besides the config (plugins,
	// inlined key files); the watcher reloads when they change.
	Files []string

	chains   []*filter.Chain
	refs     atomic.Int64 // 1 owner ref + 1 per request in flight
	closeErr error
	closed   chan struct{}
	once     sync.Once
}

// acquire takes a request reference; it fails when the snapshot is already
// closing (the caller then loads the new current snapshot).
func (s *Snapshot) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference and closes the snapshot when it was the last.
func (s *Snapshot) release() {
	if s.refs.Add(-1) == 0 {
		s.close()
	}
}

func (s *Snapshot) close() {
	s.once.Do(func() {
		// Closing must not depend on a request's context: it runs after the
		// last request is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		for _, c := range s.chains {
			errs = append(errs, c.Close(ctx))
		}
		if s.Upstreams != nil {
			errs = append(errs, s.Upstreams.Close(ctx))
		}
		s.closeErr = errors.Join(errs...)
		close(s.closed)
	})
}

// Closed is closed when the snapshot's resources have been released.
func (s *Snapshot) Closed() <-chan struct{} { return s.closed }

// builder turns a config into a Snapshot.
type builder struct {
	registry  *filter.Registry
	deps      filter.Deps
	upstreams upstream.Options
	observer  filter.Observer
}

func (b *builder) build(ctx context.Context, cfg *config.Config) (_ *Snapshot, err error) {
	sum := sha256.Sum256(cfg.Source)
	s := &Snapshot{
		Version: hex.EncodeToString(sum[:6]),
		Config:  cfg,
		Built:   time.Now(),
		closed:  make(chan struct{}),
	}
	s.refs.Store(1)
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	routes := append([]config.Route(nil), cfg.Routes...)
	// A listener with an upstream (sidecar inbound to the local app) gets a
	// catch-all route after the configured ones.
	for _, l := range cfg.Listeners {
		if l.Upstream != "" {
			routes = append(routes, config.Route{
				Name:      l.Name + "-default",
				Listeners: []string{l.Name},
				Cluster:   l.Upstream,
				Timeout:   30 * time.Second,
			})
		}
	}
	s.Table, err = router.Compile(routes)
	if err != nil {
		return nil, err
	}
	uopts := b.upstreams
	uopts.Resolve = cfg.Resolve
	s.Upstreams, err = upstream.NewSet(ctx, cfg.Clusters, uopts)
	if err != nil {
		return nil, fmt.Errorf("clusters: %w", err)
	}
	deps := b.deps
	deps.Mode = cfg.Mode
	var errs []error
	for _, rt := range s.Table.Routes() {
		var specs []config.Filter
		if !rt.Config.SkipDefaultFilters {
			specs = append(specs, cfg.DefaultFilters...)
		}
		specs = append(specs, rt.Config.Filters...)
		chain := &filter.Chain{Log: deps.Logger, Observer: b.observer}
		for i, fc := range specs {
			path := fmt.Sprintf("routes[%d].filters[%d]", rt.Index, i)
			spec, files, err := filterSpec(cfg, fc, path)
			s.Files = append(s.Files, files...)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			f, err := b.registry.Build(ctx, spec, deps)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", spec.Source, err))
				continue
			}
			status := fc.FailureStatus
			chain.Entries = append(chain.Entries, filter.Entry{
				Name: spec.Name, Kind: spec.Kind, Filter: f,
				FailurePolicy: spec.FailurePolicy, FailureStatus: status,
			})
		}
		rt.Chain = chain
		s.chains = append(s.chains, chain)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// filterSpec turns a configured filter into a filter.Spec. Files named by
// `*_file` keys in a plugin's config (jwks_file) are read here and handed to
// the plugin inline, because plugins never touch the file system.
func filterSpec(cfg *config.Config, fc config.Filter, path string) (filter.Spec, []string, error) {
	spec := filter.Spec{
		Name:          fc.Name,
		Kind:          fc.Kind,
		Path:          cfg.Resolve(fc.Plugin),
		SHA256:        fc.SHA256,
		FailurePolicy: filter.FailurePolicy(fc.FailurePolicy),
		FailureStatus: fc.FailureStatus,
		Settings:      fc.Settings,
		Source:        fmt.Sprintf("%s:%d: %s", cfg.File, cfg.Line(path), path),
	}
	var files []string
	if spec.Path != "" {
		files = append(files, spec.Path)
	}
	conf := fc.Config
	if m, ok := conf.(map[string]any); ok {
		inlined := make(map[string]any, len(m))
		for k, v := range m {
			inlined[k] = v
		}
		for _, k := range []string{"jwks_file"} {
			name, ok := m[k].(string)
			if !ok {
				continue
			}
			p := cfg.Resolve(name)
			files = append(files, p)
			data, err := os.ReadFile(p)
			if err != nil {
				return spec, files, fmt.Errorf("%s: config.%s: %w", spec.Source, k, err)
			}
			// JSON documents (a JWKS) are handed over as JSON, anything
			// else (PEM) as a string.
			if json.Valid(data) {
				inlined[k[:len(k)-len("_file")]] = json.RawMessage(data)
			} else {
				inlined[k[:len(k)-len("_file")]] = string(data)
			}
			delete(inlined, k)
		}
		conf = inlined
	}
	if conf == nil {
		conf = map[string]any{}
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		return spec, files, fmt.Errorf("%s: config: %w", spec.Source, err)
	}
	spec.Config = raw
	return spec, files, nil
}
