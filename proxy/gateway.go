package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/admin"
	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/filter/builtin"
	"github.com/wasmgate/wasmgate/proxy/listener"
	"github.com/wasmgate/wasmgate/proxy/mesh"
	"github.com/wasmgate/wasmgate/proxy/observe"
	"github.com/wasmgate/wasmgate/proxy/store"
	"github.com/wasmgate/wasmgate/proxy/upstream"
	"github.com/wasmgate/wasmgate/proxy/wasm"
	"github.com/wasmgate/wasmgate/proxy/watch"
)

// GatewayOptions configure a whole wasmgate process.
type GatewayOptions struct {
	// ConfigPath is the YAML config.
	ConfigPath string
	// Mode overrides the config's mode when set.
	Mode string
	// LogFormat overrides logging.format when set.
	LogFormat string
	// LogOutput receives the process log; default stderr.
	LogOutput io.Writer
	// AccessOutput receives the access log when it goes to stdout; default stdout.
	AccessOutput io.Writer
	// Version is reported in build info.
	Version string
	// Factories registers extra filter kinds (process plugins).
	Factories func(r *filter.Registry, log *zap.Logger) (closer func(context.Context) error, err error)
	// PluginStatus lists the plugins of those extra kinds for /plugins,
	// after the Wasm plugins. Each entry should carry a "kind" field.
	PluginStatus func() []any
}

// Gateway is a running wasmgate: the Server plus everything it owns —
// listeners, admin, watcher, Wasm host, store, mesh identities, metrics.
// Lifecycle: NewGateway (loads and checks the config), Start, Shutdown.
type Gateway struct {
	opts      GatewayOptions
	Log       *zap.Logger
	level     zap.AtomicLevel
	Server    *Server
	Registry  *prometheus.Registry
	metrics   *observe.Metrics
	access    *observe.AccessLog
	host      *wasm.Host
	store     store.Store
	mesh      *mesh.Provider
	admin     *admin.Server
	tracker   *admin.Tracker
	watcher   *watch.Watcher
	listeners []*listener.Listener
	closers   []func(context.Context) error

	mu      sync.Mutex
	stopped bool
}

// NewGateway loads the config, builds every process-wide part and the first
// snapshot. It refuses a bad config with its file, line and reason, and
// starts nothing that listens.
func NewGateway(ctx context.Context, opts GatewayOptions) (_ *Gateway, err error) {
	cfg, err := config.LoadMode(opts.ConfigPath, opts.Mode)
	if err != nil {
		return nil, err
	}
	if opts.LogFormat != "" {
		cfg.Logging.Format = opts.LogFormat
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	log, level, err := observe.NewLogger(cfg.Logging.Level, cfg.Logging.Format, opts.LogOutput)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	g := &Gateway{opts: opts, Log: log, Registry: observe.NewRegistry(), tracker: admin.NewTracker()}
	defer func() {
		if err != nil {
			_ = g.closeAll(context.Background())
		}
	}()
	g.level = level
	if g.metrics, err = observe.NewMetrics(g.Registry); err != nil {
		return nil, err
	}
	g.metrics.SetBuildVersion(opts.Version)
	if g.access, err = observe.NewAccessLog(cfg.Logging.AccessLog, opts.AccessOutput); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	if g.access != nil {
		g.closers = append(g.closers, func(context.Context) error { return g.access.Close() })
	}
	upMetrics, err := upstream.NewMetrics(g.Registry)
	if err != nil {
		return nil, err
	}
	if g.store, err = store.New(ctx, cfg.Store, log.Named("store"), g.Registry); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.store.Close)
	g.host, err = wasm.NewHost(ctx, wasm.HostOptions{
		CacheDir:       cfg.Wasm.CacheDir,
		MemoryLimitMiB: cfg.Wasm.MemoryLimitMiB,
		CallTimeout:    cfg.Wasm.CallTimeout,
		PoolSize:       cfg.Wasm.PoolSize,
		PoolWait:       cfg.Wasm.PoolWait,
		InitTimeout:    cfg.Wasm.InitTimeout,
		Logger:         log,
		Metrics:        g.Registry,
	})
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.host.Close)
	g.mesh = mesh.NewProvider(log.Named("mesh"), filepath.Dir(opts.ConfigPath))
	g.closers = append(g.closers, g.mesh.Close)

	reg := filter.NewRegistry()
	reg.Register("wasm", g.host.Factory())
	builtin.Register(reg)
	mesh.RegisterFilters(reg)
	if opts.Factories != nil {
		closer, err := opts.Factories(reg, log)
		if err != nil {
			return nil, err
		}
		if closer != nil {
			g.closers = append(g.closers, closer)
		}
	}

	g.Server = New(Options{
		ConfigPath: opts.ConfigPath,
		Mode:       opts.Mode,
		Logger:     log,
		Registry:   reg,
		Deps:       filter.Deps{Logger: log.Named("filter"), Metrics: g.Registry, Store: g.store},
		Upstream:   upstream.Options{Logger: log, Metrics: upMetrics, TLSConfig: g.mesh.UpstreamTLS},
		Observer:   g.metrics,
		PeerID:     mesh.PeerID,
		Metrics:    g.metrics,
		AccessLog:  g.access,
		Prepare:    mesh.Expand,
		OnReload:   g.onReload,
	})
	if err := g.Server.Apply(ctx, cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// onReload keeps the watcher's file list in step with the live snapshot.
func (g *Gateway) onReload(snap *Snapshot, err error) {
	if err != nil {
		g.tracker.Record(nil, "", err)
	} else if snap != nil {
		g.tracker.Record(snap.Config, snap.Version, nil)
	}
	if g.watcher == nil {
		return
	}
	// After a failed reload the live snapshot's files stay watched, plus any
	// plugin file whose build failed, so fixing it triggers the next reload.
	if cur := g.Server.Snapshot(); cur != nil {
		snap = cur
	}
	if snap == nil {
		return
	}
	if err := g.watcher.SetPaths(g.watchPaths(snap)); err != nil {
		g.Log.Warn("cannot watch files", zap.Error(err))
	}
}

func (g *Gateway) watchPaths(snap *Snapshot) []string {
	paths := []string{g.opts.ConfigPath}
	paths = append(paths, snap.Files...)
	paths = append(paths, mesh.WatchFiles(snap.Config)...)
	paths = append(paths, g.host.WatchPaths()...)
	return paths
}

// Start binds the listeners and the admin API and starts watching files.
// ctx bounds starting up only; everything runs until Shutdown. A bind error
// stops everything already started and is returned.
func (g *Gateway) Start(ctx context.Context) (err error) {
	snap := g.Server.Snapshot()
	cfg := snap.Config
	defer func() {
		if err != nil {
			_ = g.Shutdown(context.Background())
		}
	}()
	lm, err := listener.NewMetrics(g.Registry)
	if err != nil {
		return err
	}
	for _, lc := range cfg.Listeners {
		lc := lc
		opts := listener.Options{Logger: g.Log, Metrics: lm}
		if hooks, ok, err := g.mesh.ListenerHooks(lc); err != nil {
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		} else if ok {
			opts.GetCertificate, opts.ClientCAs, opts.VerifyConnection = hooks.GetCertificate, hooks.ClientCAs, hooks.VerifyConnection
		}
		if lc.TLS != nil && lc.TLS.SelfSigned && len(lc.TLS.Certs) > 0 {
			created, err := listener.EnsureSelfSigned(cfg.Resolve(lc.TLS.Certs[0].CertFile), cfg.Resolve(lc.TLS.Certs[0].KeyFile))
			if err != nil {
				return fmt.Errorf("listener %q: self-signed certificate: %w", lc.Name, err)
			}
			if created {
				g.Log.Info("generated a self-signed certificate", zap.String("listener", lc.Name), zap.String("cert", lc.TLS.Certs[0].CertFile))
			}
		}
		l, err := listener.New(resolveListener(cfg, lc), cfg.Limits, g.Server, opts)
		if err != nil {
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		if err := l.Start(ctx); err != nil {
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		g.listeners = append(g.listeners, l)
	}
	if cfg.Admin.Address != "off" {
		g.admin = admin.New(cfg.Admin.Address, admin.Deps{
			Logger:   g.Log,
			Ready:    g.Server.Ready,
			Reload:   g.Server.Reload,
			Config:   g.tracker.ConfigStatus,
			Version:  g.tracker.Version,
			Clusters: g.clusters,
			Plugins:  g.plugins,
			Gatherer: g.Registry,
			Level:    g.level,
			Pprof:    cfg.Admin.Pprof,
		})
		if err := g.admin.Start(ctx); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	g.watcher = watch.New(g.Log.Named("watch"), 200*time.Millisecond, func(ctx context.Context) error {
		return g.Server.Reload(ctx)
	})
	g.watcher.HandleSIGHUP()
	if err := g.watcher.SetPaths(g.watchPaths(snap)); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	// The watcher lives until Shutdown, not until ctx (which only bounds
	// starting up).
	if err := g.watcher.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	return nil
}

// resolveListener makes the listener's file paths relative to the config.
func resolveListener(cfg *config.Config, l config.Listener) config.Listener {
	if l.TLS == nil {
		return l
	}
	t := *l.TLS
	t.Certs = append([]config.Cert(nil), t.Certs...)
	for i := range t.Certs {
		t.Certs[i].CertFile = cfg.Resolve(t.Certs[i].CertFile)
		t.Certs[i].KeyFile = cfg.Resolve(t.Certs[i].KeyFile)
	}
	t.ClientCAFile = cfg.Resolve(t.ClientCAFile)
	l.TLS = &t
	return l
}

// Listeners returns the started listeners.
func (g *Gateway) Listeners() []*listener.Listener { return g.listeners }

// AdminAddr returns the admin listener's address, or "" when it is off.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.Addr().String()
}

// wasmStatus is a Wasm plugin's /plugins entry, with its kind.
type wasmStatus struct {
	Kind string `json:"kind"`
	wasm.PluginStatus
}

// plugins is what /plugins shows: Wasm plugins, then the extra kinds.
func (g *Gateway) plugins() any {
	out := []any{}
	for _, st := range g.host.Plugins() {
		out = append(out, wasmStatus{Kind: "wasm", PluginStatus: st})
	}
	if g.opts.PluginStatus != nil {
		out = append(out, g.opts.PluginStatus()...)
	}
	return out
}

func (g *Gateway) clusters() any {
	snap := g.Server.Snapshot()
	if snap == nil {
		return []upstream.ClusterStatus{}
	}
	return snap.Upstreams.Status()
}

// Shutdown drains: readiness goes false, listeners stop accepting, in-flight
// requests get up to the drain timeout (bounded by ctx), then everything is
// closed. It is safe to call more than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	g.mu.Unlock()
	g.Server.SetDraining()
	if g.admin != nil {
		g.admin.SetDraining(true)
	}
	drain := 15 * time.Second
	if snap := g.Server.Snapshot(); snap != nil {
		drain = snap.Config.Shutdown.DrainTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, drain)
	defer cancel()
	var errs []error
	if g.watcher != nil {
		errs = append(errs, g.watcher.Close())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, l := range g.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Shutdown(dctx)
			if errors.Is(err, context.DeadlineExceeded) {
				g.Log.Warn("drain time over: open requests were cut", zap.String("listener", l.Name()), zap.Duration("drain_timeout", drain))
				return
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("listener %q: %w", l.Name(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Requests still running after the drain time were cut by the
	// listeners: that is the configured outcome, not a shutdown failure.
	// What remains gets its own short deadline.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer ccancel()
	if g.admin != nil {
		errs = append(errs, g.admin.Shutdown(cctx))
	}
	errs = append(errs, g.Server.Close(cctx))
	errs = append(errs, g.closeAll(cctx))
	_ = g.Log.Sync()
	return errors.Join(errs...)
}

func (g *Gateway) closeAll(ctx context.Context) error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i](ctx))
	}
	g.closers = nil
	return errors.Join(errs...)
}

// Check builds every part of cfg that can fail — routes, clusters, and each
// filter (plugins are compiled, instantiated and shown their config) —
// without listening, then releases it. `wasmgate validate` uses it.
func Check(ctx context.Context, cfg *config.Config, factories func(*filter.Registry, *zap.Logger) (func(context.Context) error, error)) error {
	log := zap.NewNop()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{
		CacheDir: cfg.Wasm.CacheDir, MemoryLimitMiB: cfg.Wasm.MemoryLimitMiB,
		CallTimeout: cfg.Wasm.CallTimeout, PoolSize: 1, PoolWait: cfg.Wasm.PoolWait,
		InitTimeout: cfg.Wasm.InitTimeout, Logger: log,
	})
	if err != nil {
		return err
	}
	defer host.Close(context.Background())
	st := store.NewMemory()
	defer st.Close(context.Background())
	reg := filter.NewRegistry()
	reg.Register("wasm", host.Factory())
	builtin.Register(reg)
	mesh.RegisterFilters(reg)
	if factories != nil {
		closer, err := factories(reg, log)
		if err != nil {
			return err
		}
		if closer != nil {
			defer closer(context.Background())
		}
	}
	prov := mesh.NewProvider(log, filepath.Dir(cfg.File))
	defer prov.Close(context.Background())
	b := &builder{registry: reg, deps: filter.Deps{Logger: log, Store: st, Metrics: prometheus.NewRegistry()}, upstreams: upstream.Options{Logger: log, TLSConfig: prov.UpstreamTLS}}
	snap, err := b.build(ctx, cfg)
	if err != nil {
		return err
	}
	snap.release()
	<-snap.Closed()
	return nil
}
