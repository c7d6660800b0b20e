// Package wasm runs filters written as WebAssembly plugins on wazero. It is
// the only package that imports wazero.
//
// Guests speak the published http-wasm handler ABI (host module
// "http_handler") plus wasmgate's extension module "wasmgate"; names and
// numbers are in abi, behaviour in docs/wasm-host.md. A Host owns
// one wazero runtime per memory limit, a file-backed compilation cache and
// the compiled modules (shared by sha256 across reloads); each filter built
// by the Host's Factory owns a bounded pool of warm instances.
package wasm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/abi/jws"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

// Defaults applied by NewHost to zero HostOptions fields.
const (
	DefaultMemoryLimitMiB = 16
	DefaultCallTimeout    = 20 * time.Millisecond
	DefaultPoolWait       = 50 * time.Millisecond
	// DefaultInitTimeout bounds _initialize/_start and check_config.
	DefaultInitTimeout = 30 * time.Second
)

// HostOptions configure a Host. Zero values take the defaults.
type HostOptions struct {
	// CacheDir holds wazero's compilation cache. Default
	// os.UserCacheDir()/wasmgate/wazero-<wazero version>; "off" disables
	// the file cache.
	CacheDir string
	// MemoryLimitMiB is the memory limit of one instance. Default 16 here;
	// the config's default is 32 (proxy/config).
	MemoryLimitMiB uint32
	// CallTimeout bounds one guest call. Default 20ms.
	CallTimeout time.Duration
	// InitTimeout bounds a guest's initialisation. Default 30s: it runs at
	// load time, off the request path, and a cold Go runtime start on a
	// busy machine can take seconds.
	InitTimeout time.Duration
	// PoolSize is the number of instances per plugin. Default GOMAXPROCS
	// for stateless guests, 4 x GOMAXPROCS for guests pinned per request.
	PoolSize int
	// PoolWait is how long a request waits for a free instance. Default
	// 50ms; negative means do not wait.
	PoolWait time.Duration
	// Logger receives host and guest logs. Default nop.
	Logger *zap.Logger
	// Metrics registers the host's collector and guest metrics. Default: a
	// private registry (metrics are kept but not exported).
	Metrics prometheus.Registerer
}

// Validate reports invalid options.
func (o HostOptions) Validate() error {
	var errs []error
	if o.MemoryLimitMiB > 4096 {
		errs = append(errs, fmt.Errorf("wasm: memory_limit_mib %d is over 4096", o.MemoryLimitMiB))
	}
	if o.CallTimeout < 0 || o.InitTimeout < 0 || o.PoolSize < 0 {
		errs = append(errs, errors.New("wasm: call_timeout, init_timeout and pool_size must not be negative"))
	}
	return errors.Join(errs...)
}

func (o *HostOptions) defaults() {
	if o.MemoryLimitMiB == 0 {
		o.MemoryLimitMiB = DefaultMemoryLimitMiB
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.InitTimeout == 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.PoolWait == 0 {
		o.PoolWait = DefaultPoolWait
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
}

// Host runs Wasm plugins. Create one per process with NewHost, register
// Factory() as filter kind "wasm", and Close it at shutdown.
type Host struct {
	opts  HostOptions
	log   *zap.Logger
	reg   prometheus.Registerer
	cache wazero.CompilationCache
	keys  jws.Verifier

	// insts maps a guest module to its instance, for host functions.
	insts sync.Map

	// guardMu orders turnOffCallWatcher (callguard.go); slowCalls is set
	// once when it could not be used.
	guardMu   sync.Mutex
	slowCalls atomic.Bool

	mu       sync.Mutex
	closed   bool
	runtimes map[uint32]*runtimeEntry
	modules  map[moduleKey]*compiled
	plugins  map[*plugin]struct{}
	stats    map[string]*pluginStats
	failures map[string]failure // by path
	families *observe.PluginFamilies
}

// failure is a plugin build that failed, kept for /plugins and the watcher.
type failure struct {
	name, path, source string
	err                string
	at                 time.Time
}

type runtimeEntry struct {
	rt    wazero.Runtime
	pages uint32
}

type moduleKey struct {
	pages uint32
	sha   string
}

// NewHost creates the runtime machinery. It compiles nothing until Build.
func NewHost(ctx context.Context, opts HostOptions) (*Host, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	h := &Host{
		opts:     opts,
		log:      opts.Logger.Named("wasm"),
		reg:      opts.Metrics,
		runtimes: map[uint32]*runtimeEntry{},
		modules:  map[moduleKey]*compiled{},
		plugins:  map[*plugin]struct{}{},
		stats:    map[string]*pluginStats{},
		failures: map[string]failure{},
		families: observe.NewPluginFamilies(opts.Metrics),
	}
	dir := opts.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	if dir != "off" && dir != "" {
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			h.log.Warn("compilation cache unavailable, compiling in memory", zap.String("dir", dir), zap.Error(err))
			c = wazero.NewCompilationCache()
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	if err := h.reg.Register(collector{h}); err != nil {
		_ = h.cache.Close(ctx)
		return nil, fmt.Errorf("wasm: register metrics: %w", err)
	}
	return h, nil
}

// DefaultCacheDir is os.UserCacheDir()/wasmgate/wazero-<version>, or a
// directory under os.TempDir when there is no user cache directory.
func DefaultCacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "wasmgate", "wazero-"+wazeroVersion())
}

func wazeroVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return "dev"
}

// runtime returns the runtime for a memory limit, creating it with the
// host modules on first use.
func (h *Host) runtime(ctx context.Context, pages uint32) (*runtimeEntry, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if r, ok := h.runtimes[pages]; ok {
		return r, nil
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages).
		WithCompilationCache(h.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate WASI: %w", err)
	}
	if err := h.instantiateHostModule(ctx, rt, "http_handler", httpHandlerFuncs()); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	if err := h.instantiateHostModule(ctx, rt, "wasmgate", wasmgateFuncs()); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	r := &runtimeEntry{rt: rt, pages: pages}
	h.runtimes[pages] = r
	return r, nil
}

func (h *Host) instantiateHostModule(ctx context.Context, rt wazero.Runtime, name string, funcs []hostFunc) error {
	b := rt.NewHostModuleBuilder(name)
	for _, f := range funcs {
		b.NewFunctionBuilder().
			WithGoModuleFunction(h.wrap(f), f.params, f.results).
			Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("wasm: instantiate host module %s: %w", name, err)
	}
	return nil
}

// wrap turns a hostFunc into a wazero function that finds the calling
// instance and refuses calls that need a request outside of one.
func (h *Host) wrap(f hostFunc) api.GoModuleFunc {
	fn, name, reqOnly, nres := f.fn, f.name, f.reqOnly, len(f.results)
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		i := h.instanceOf(ctx, mod)
		if i == nil {
			for j := 0; j < nres; j++ {
				stack[j] = 0
			}
			return
		}
		if reqOnly && i.x == nil {
			i.violate("%s called outside a request (during %s)", name, i.phase)
			for j := 0; j < nres; j++ {
				stack[j] = 0
			}
			return
		}
		start := time.Now()
		fn(i, stack)
		st := i.p.stats
		st.hostNs.Add(uint64(time.Since(start)))
		st.hostCalls.Add(1)
	}
}

// instanceOf finds the instance a host call comes from: the call's context
// is the instance's callCtx, which points back to it (a map lookup per host
// call cost several µs of cache misses under load); the map is the
// fallback for calls made with another context.
func (h *Host) instanceOf(ctx context.Context, mod api.Module) *instance {
	if c, ok := ctx.(*callCtx); ok && c.inst != nil && c.inst.mod == mod {
		return c.inst
	}
	if v, ok := h.insts.Load(mod); ok {
		return v.(*instance)
	}
	return nil
}

// Factory returns the filter factory for kind "wasm".
func (h *Host) Factory() filter.Factory { return filter.FactoryFunc(h.build) }

// WatchPaths lists the plugin files in use and the files of failed builds,
// so a watcher reloads when any of them changes. Sorted, no duplicates.
func (h *Host) WatchPaths() []string {
	h.mu.Lock()
	set := map[string]bool{}
	for p := range h.plugins {
		set[p.path] = true
	}
	for path := range h.failures {
		set[path] = true
	}
	h.mu.Unlock()
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Close closes every plugin, runtime and the compilation cache. Filters
// must not be used afterwards.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	plugins := make([]*plugin, 0, len(h.plugins))
	for p := range h.plugins {
		plugins = append(plugins, p)
	}
	h.mu.Unlock()
	var errs []error
	for _, p := range plugins {
		errs = append(errs, p.Close(ctx))
	}
	h.mu.Lock()
	for _, r := range h.runtimes {
		errs = append(errs, r.rt.Close(ctx))
	}
	h.runtimes = map[uint32]*runtimeEntry{}
	h.modules = map[moduleKey]*compiled{}
	h.families.Close()
	h.mu.Unlock()
	errs = append(errs, h.cache.Close(ctx))
	h.reg.Unregister(collector{h})
	return errors.Join(errs...)
}

// statsFor returns the long-lived counters of a plugin name.
func (h *Host) statsFor(name string) *pluginStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.stats[name]
	if !ok {
		s = &pluginStats{name: name}
		h.stats[name] = s
	}
	return s
}

func defaultPoolSize(stateless bool) int {
	n := runtime.GOMAXPROCS(0)
	if !stateless {
		n *= 4
	}
	return n
}

// Precompile compiles the module at path into the host's compilation cache
// without instantiating it. The test suite warms its shared cache with it
// before the race-detector run, where wazero's compiler is ten times slower.
func (h *Host) Precompile(ctx context.Context, path string) error {
	bin, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("wasm: precompile: %w", err)
	}
	r, err := h.runtime(ctx, h.opts.MemoryLimitMiB*16)
	if err != nil {
		return err
	}
	cm, err := r.rt.CompileModule(ctx, bin)
	if err != nil {
		return fmt.Errorf("wasm: precompile %q: %w", path, err)
	}
	return cm.Close(ctx)
}
