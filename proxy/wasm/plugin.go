package wasm

import (
	"context"
	"errors"
	"fmt"

	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// Settings are the per-filter knobs read from filter.Deps.Settings.
type Settings struct {
	PoolSize       int
	MemoryLimitMiB uint32
	CallTimeout    time.Duration
	PoolWait       time.Duration
}

// ParseSettings reads spec.Settings: pool_size, memory_limit_mib, call_timeout and
// pool_wait; unknown keys are an error so typos do not pass silently.
func ParseSettings(m map[string]string) (Settings, error) {
	var s Settings
	err := filter.EachSetting(m, func(k, v string) error {
		switch k {
		case "pool_size":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1024 {
				return fmt.Errorf("settings.pool_size: want 1..1024, got %q", v)
			}
			s.PoolSize = n
		case "memory_limit_mib":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n < 1 || n > 4096 {
				return fmt.Errorf("settings.memory_limit_mib: want 1..4096, got %q", v)
			}
			s.MemoryLimitMiB = uint32(n)
		case "call_timeout", "pool_wait":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				return fmt.Errorf("settings.%s: want a duration up to 1m, got %q", k, v)
			}
			if k == "call_timeout" {
				s.CallTimeout = d
			} else {
				s.PoolWait = d
			}
		default:
			return fmt.Errorf("settings.%s: unknown wasm setting (known: call_timeout, memory_limit_mib, pool_size, pool_wait)", k)
		}
		return nil
	})
	return s, err
}

// plugin is one built wasm filter: a module, its config and its pool.
type plugin struct {
	h           *Host
	name        string
	path        string
	source      string
	sha         string
	config      []byte
	rt          *runtimeEntry
	comp        *compiled
	pool        *pool
	log         *zap.Logger
	store       filter.Store
	storePrefix string
	stats       *pluginStats
	timeout     time.Duration
	initTimeout time.Duration
	loadedAt    time.Time
	names       nameCache

	// From the first instance's initialisation.
	stateless   bool
	requestOnly bool
	features    abi.Features

	closed atomic.Bool
}

var (
	_ filter.ResponseFilter = (*plugin)(nil)
	_ filter.Closer         = (*plugin)(nil)
)

// build is the wasm filter.Factory.
func (h *Host) build(ctx context.Context, spec filter.Spec, deps filter.Deps) (flt filter.Filter, err error) {
	path := spec.Path
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	name := spec.Name
	if name == "" {
		base := filepath.Base(path)
		name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	defer func() {
		h.recordBuild(name, path, spec.Source, err)
	}()
	set, err := ParseSettings(spec.Settings)
	if err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	bin, sha, err := readPlugin(path, spec.SHA256)
	if err != nil {
		return nil, err
	}
	mib := h.opts.MemoryLimitMiB
	if set.MemoryLimitMiB != 0 {
		mib = set.MemoryLimitMiB
	}
	rt, err := h.runtime(ctx, mib*16) // 16 pages of 64 KiB per MiB
	if err != nil {
		return nil, err
	}
	comp, err := h.compile(ctx, rt, bin, sha)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	log := deps.Logger
	if log == nil {
		log = h.log
	}
	p := &plugin{
		h:           h,
		name:        name,
		path:        path,
		source:      spec.Source,
		sha:         sha,
		config:      spec.Config,
		rt:          rt,
		comp:        comp,
		log:         log.Named("wasm").With(zap.String("plugin", name)),
		store:       deps.Store,
		storePrefix: "wasm/" + name + "/",
		stats:       h.statsFor(name),
		timeout:     h.opts.CallTimeout,
		initTimeout: h.opts.InitTimeout,
		loadedAt:    time.Now(),
	}
	if set.CallTimeout > 0 {
		p.timeout = set.CallTimeout
	}
	first, err := p.newInstance(ctx)
	if err != nil {
		h.release(ctx, comp)
		return nil, err
	}
	p.stateless, p.requestOnly, p.features = first.stateless, first.requestOnly, first.features
	size := h.opts.PoolSize
	if set.PoolSize > 0 {
		size = set.PoolSize
	}
	if size == 0 {
		size = defaultPoolSize(p.stateless)
	}
	wait := h.opts.PoolWait
	if set.PoolWait > 0 {
		wait = set.PoolWait
	}
	p.pool = newPool(size, wait, p.newInstance, p.replaceFailed)
	if err := p.pool.fill(ctx, first); err != nil {
		p.pool.close()
		h.release(ctx, comp)
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		p.pool.close()
		h.release(ctx, comp)
		return nil, ErrClosed
	}
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	p.log.Info("plugin loaded", zap.String("file", path), zap.String("sha256", sha),
		zap.String("abi", comp.abi), zap.Int("pool_size", size), zap.Bool("stateless", p.stateless))
	return p, nil
}

// recordBuild remembers failed builds (for /plugins and WatchPaths) and
// forgets them when the same file builds again.
func (h *Host) recordBuild(name, path, source string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.failures, path)
		return
	}
	h.failures[path] = failure{name: name, path: path, source: source, err: err.Error(), at: time.Now()}
	if s, ok := h.stats[name]; ok {
		s.setErr(err.Error(), time.Now().UnixNano())
	}
}

// respState carries a request from handle_request to handle_response.
type respState struct {
	st     reqState
	inst   *instance // pinned instance, nil for stateless guests
	claim  atomic.Bool
	cancel func() bool
}

// HandleRequest runs the guest's handle_request.
func (p *plugin) HandleRequest(ctx context.Context, x *filter.Exchange) (bool, error) {
	if p.features&abi.FeatureBufferRequest != 0 {
		if _, err := x.RequestBody(); err != nil {
			return false, fmt.Errorf("wasm: plugin %q: buffer request body: %w", p.name, err)
		}
	}
	i, err := p.acquire(ctx)
	if err != nil {
		return false, err
	}
	st := &i.scratch
	*st = reqState{features: i.features}
	if err := p.call(i, i.handleReq, x, st, phaseRequest); err != nil {
		return false, err
	}
	res := i.stack[0]
	next, reqCtx := uint32(res), uint32(res>>32)
	switch {
	case next > 1:
		p.pool.release(i)
		p.stats.violations.Add(1)
		return false, p.noteErr(fmt.Errorf("wasm: plugin %q: handle_request returned next=%d, want 0 or 1", p.name, next))
	case next == 0:
		p.pool.release(i)
		return false, nil
	case p.requestOnly:
		p.pool.release(i)
		return true, nil
	}
	pinned := !p.stateless
	if pinned || reqCtx != 0 || st.features != i.features || st.reqRead != 0 {
		rs := &respState{st: *st}
		rs.st.reqCtx = reqCtx
		if pinned {
			rs.inst = i
			// Safety net: if the response phase never runs, the instance
			// goes back when the request ends.
			rs.cancel = context.AfterFunc(ctx, func() {
				if rs.claim.CompareAndSwap(false, true) {
					p.pool.release(i)
				}
			})
		}
		x.SetState(p, rs)
	}
	if !pinned {
		p.pool.release(i)
	}
	return true, nil
}

// HandleResponse runs the guest's handle_response.
func (p *plugin) HandleResponse(ctx context.Context, x *filter.Exchange) error {
	if p.requestOnly {
		return nil
	}
	rs, _ := x.State(p).(*respState)
	var i *instance
	if rs != nil && rs.inst != nil {
		if !rs.claim.CompareAndSwap(false, true) {
			return fmt.Errorf("wasm: plugin %q: request ended before its response phase", p.name)
		}
		rs.cancel()
		i = rs.inst
	} else {
		var err error
		if i, err = p.acquire(ctx); err != nil {
			return err
		}
	}
	st := &i.scratch
	if rs != nil {
		*st = rs.st
	} else {
		*st = reqState{features: i.features}
	}
	if st.features&abi.FeatureBufferResponse != 0 && x.Response != nil && !x.IsError {
		if _, err := x.Response.BufferBody(bodyCap(x.BodyCap)); err != nil {
			p.pool.release(i)
			return fmt.Errorf("wasm: plugin %q: buffer response body: %w", p.name, err)
		}
	}
	i.stack[0] = uint64(st.reqCtx)
	i.stack[1] = 0
	if x.IsError {
		i.stack[1] = 1
	}
	if err := p.call(i, i.handleResp, x, st, phaseResponse); err != nil {
		return err
	}
	p.pool.release(i)
	return nil
}

func (p *plugin) acquire(ctx context.Context) (*instance, error) {
	start := time.Now()
	i, err := p.pool.acquire(ctx)
	p.stats.acquireNs.Add(uint64(time.Since(start)))
	if err != nil {
		if errors.Is(err, ErrPoolExhausted) {
			p.stats.exhausted.Add(1)
		}
		return nil, fmt.Errorf("wasm: plugin %q: %w", p.name, err)
	}
	return i, nil
}

// call runs one guest call and sorts out failures: an ABI violation fails
// the request and keeps the instance; a trap, timeout or exit discards the
// instance (a replacement is made in the background). On error the
// instance is no longer the caller's.
func (p *plugin) call(i *instance, fn api.Function, x *filter.Exchange, st *reqState, ph phase) error {
	p.stats.calls.Add(1)
	i.stderr.tail = i.stderr.tail[:0]
	start := time.Now()
	err := i.call(fn, x, st, ph)
	p.stats.callNs.Add(uint64(time.Since(start)))
	if err == nil {
		if i.violation == nil {
			return nil
		}
		p.pool.release(i)
		p.stats.violations.Add(1)
		return p.noteErr(fmt.Errorf("wasm: plugin %q %s: %w", p.name, ph, i.violation))
	}
	reason := "trap"
	var exit *sys.ExitError
	switch {
	case uint64(i.mem.Size())+64<<10 > uint64(p.rt.pages)*65536:
		// A guest at its memory limit either trapped on a failed
		// memory.grow or thrashed its GC until the deadline.
		reason = "memory limit"
		p.stats.traps.Add(1)
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		reason = "timeout"
		p.stats.timeouts.Add(1)
	default:
		p.stats.traps.Add(1)
	}
	note := i.stderr.tailNote()
	p.pool.discard(i)
	p.stats.replaced.Add(1)
	if reason == "timeout" {
		return p.noteErr(fmt.Errorf("wasm: plugin %q %s: exceeded the %v call timeout: %w", p.name, ph, p.timeout, err))
	}
	return p.noteErr(fmt.Errorf("wasm: plugin %q %s: %s: %w%s", p.name, ph, reason, err, note))
}

// noteErr records err as the plugin's last error and returns it.
func (p *plugin) noteErr(err error) error {
	p.stats.setErr(err.Error(), time.Now().UnixNano())
	return err
}

func (p *plugin) replaceFailed(err error) {
	p.noteErr(err)
	p.log.Error("replacing a plugin instance failed; retrying", zap.Error(err))
}

func (p *plugin) storeError(op string, err error) {
	if ce := p.log.Check(zap.WarnLevel, "plugin store call failed"); ce != nil {
		ce.Write(zap.String("op", op), zap.Error(err))
	}
}

// Close closes the plugin's instances and releases its compiled module.
func (p *plugin) Close(ctx context.Context) error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.pool.close()
	p.h.mu.Lock()
	delete(p.h.plugins, p)
	p.h.mu.Unlock()
	p.h.release(ctx, p.comp)
	return nil
}

// PluginStatus describes a plugin for the admin /plugins endpoint.
type PluginStatus struct {
	Name       string `json:"name"`
	File       string `json:"file"`
	Source     string `json:"source,omitempty"`
	State      string `json:"state"` // "serving" or "failed"
	SHA256     string `json:"sha256,omitempty"`
	ABI        string `json:"abi,omitempty"`
	Stateless  bool   `json:"stateless"`
	MemoryMiB  uint32 `json:"memory_limit_mib,omitempty"`
	PoolSize   int    `json:"pool_size"`
	InUse      int64  `json:"in_use"`
	Idle       int    `json:"idle"`
	Waiting    int64  `json:"waiting"`
	Calls      uint64 `json:"calls"`
	Traps      uint64 `json:"traps"`
	Timeouts   uint64 `json:"timeouts"`
	Violations uint64 `json:"violations"`
	Exhausted  uint64 `json:"pool_exhausted"`
	Replaced   uint64 `json:"replaced"`
	// AcquireNs, CallNs and HostNs are the total time spent waiting for an
	// instance, in guest calls (host functions included) and in host
	// functions alone; HostCalls counts host function calls.
	AcquireNs   uint64    `json:"acquire_ns_total"`
	CallNs      uint64    `json:"call_ns_total"`
	HostNs      uint64    `json:"host_ns_total"`
	HostCalls   uint64    `json:"host_calls"`
	LoadedAt    time.Time `json:"loaded_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Plugins reports every live plugin and every failed build, sorted by name
// and file. Counters are per plugin name and survive reloads.
func (h *Host) Plugins() []PluginStatus {
	h.mu.Lock()
	live := make([]*plugin, 0, len(h.plugins))
	for p := range h.plugins {
		live = append(live, p)
	}
	fails := make([]failure, 0, len(h.failures))
	for _, f := range h.failures {
		fails = append(fails, f)
	}
	h.mu.Unlock()
	out := make([]PluginStatus, 0, len(live)+len(fails))
	for _, p := range live {
		s := p.stats
		st := PluginStatus{
			Name: p.name, File: p.path, Source: p.source, State: "serving", SHA256: p.sha,
			ABI: p.comp.abi, Stateless: p.stateless, MemoryMiB: p.rt.pages / 16,
			PoolSize: p.pool.size, InUse: p.pool.inUse.Load(), Idle: len(p.pool.free),
			Waiting: p.pool.waiting.Load(), Calls: s.calls.Load(), Traps: s.traps.Load(),
			Timeouts: s.timeouts.Load(), Violations: s.violations.Load(),
			Exhausted: s.exhausted.Load(), Replaced: s.replaced.Load(), LoadedAt: p.loadedAt,
			AcquireNs: s.acquireNs.Load(), CallNs: s.callNs.Load(), HostNs: s.hostNs.Load(), HostCalls: s.hostCalls.Load(),
		}
		if msg, at := s.lastError(); msg != "" {
			st.LastError, st.LastErrorAt = msg, time.Unix(0, at)
		}
		out = append(out, st)
	}
	for _, f := range fails {
		out = append(out, PluginStatus{Name: f.name, File: f.path, Source: f.source, State: "failed",
			LastError: f.err, LastErrorAt: f.at})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Name != out[b].Name {
			return out[a].Name < out[b].Name
		}
		if out[a].File != out[b].File {
			return out[a].File < out[b].File
		}
		return out[a].LoadedAt.Before(out[b].LoadedAt)
	})
	return out
}
