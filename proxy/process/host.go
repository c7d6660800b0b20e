// Package process runs filters out of process: a plugin executable started
// through hashicorp/go-plugin and spoken to over gRPC (filter kind
// "process"). Plugins are written with the same SDK as Wasm plugins and
// built with sdk/process (see docs/process-plugins.md); they see the same
// hooks: request method, URI, headers and body, local answers, the response
// phase, properties, per-request values, shared counters and key/values in
// the proxy's store, metrics and logs.
//
// One process runs per built filter. It starts when the config that names
// it loads (the go-plugin handshake and the plugin's config check must pass
// or the config is refused), is restarted with backoff when it dies, and is
// stopped when the snapshot that uses it is retired and when the Host
// closes. While a process is down its requests get the filter's failure
// policy.
package process

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

// Options configure a Host.
type Options struct {
	// Logger receives lifecycle events and plugin logs; default no-op.
	Logger *zap.Logger
	// CallTimeout bounds one phase call into a plugin. Default 1s.
	CallTimeout time.Duration
	// StartTimeout bounds starting a plugin and its config check. Default 10s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart. Defaults
	// 100ms and 10s; the wait doubles with each restart in a row.
	MinBackoff, MaxBackoff time.Duration
}

// Validate checks the options.
func (o Options) Validate() error {
	var errs []error
	if o.CallTimeout < 0 || o.StartTimeout < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 {
		errs = append(errs, errors.New("process: durations must not be negative"))
	}
	if o.MaxBackoff != 0 && o.MinBackoff > o.MaxBackoff {
		errs = append(errs, errors.New("process: min backoff is above max backoff"))
	}
	return errors.Join(errs...)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = time.Second
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Second
	}
}

// Host owns every running process plugin. Build filters with Factory;
// Close stops whatever is still running.
type Host struct {
	opts Options
	log  *zap.Logger

	nextCall atomic.Uint64

	mu     sync.Mutex
	procs  map[*proc]struct{}
	fams   map[prometheus.Registerer]*observe.PluginFamilies
	closed bool
}

// NewHost returns a Host.
func NewHost(opts Options) (*Host, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	return &Host{opts: opts, log: opts.Logger, procs: map[*proc]struct{}{}, fams: map[prometheus.Registerer]*observe.PluginFamilies{}}, nil
}

// Factory returns the filter.Factory for kind "process".
func (h *Host) Factory() filter.Factory { return filter.FactoryFunc(h.build) }

// Register registers the "process" kind in r.
func (h *Host) Register(r *filter.Registry) { r.Register("process", h.Factory()) }

// Settings are the per-filter knobs of a process filter.
type Settings struct {
	CallTimeout  time.Duration
	StartTimeout time.Duration
}

// ParseSettings reads call_timeout and start_timeout; unknown keys are an
// error.
func ParseSettings(m map[string]string) (Settings, error) {
	var s Settings
	err := filter.EachSetting(m, func(k, v string) error {
		switch k {
		case "call_timeout", "start_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > time.Minute {
				return fmt.Errorf("settings.%s: want a duration up to 1m, got %q", k, v)
			}
			if k == "call_timeout" {
				s.CallTimeout = d
			} else {
				s.StartTimeout = d
			}
		default:
			return fmt.Errorf("settings.%s: unknown process setting (known: call_timeout, start_timeout)", k)
		}
		return nil
	})
	return s, err
}

// ErrClosed is returned by Build after Close.
var ErrClosed = errors.New("process: host closed")

func (h *Host) build(ctx context.Context, spec filter.Spec, deps filter.Deps) (filter.Filter, error) {
	set, err := ParseSettings(spec.Settings)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	p, err := h.newProc(spec, deps, set)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.procs[p] = struct{}{}
	h.mu.Unlock()
	if err := p.start(ctx); err != nil {
		h.forget(p)
		return nil, err
	}
	return &Filter{p: p}, nil
}

func (h *Host) forget(p *proc) {
	h.mu.Lock()
	delete(h.procs, p)
	h.mu.Unlock()
}

// Close stops every plugin process still running and waits for them.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	procs := make([]*proc, 0, len(h.procs))
	for p := range h.procs {
		procs = append(procs, p)
	}
	h.procs = map[*proc]struct{}{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process: close: %w", ctx.Err())
	}
}

// Status describes one running process plugin for the admin /plugins list.
type Status struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	File        string    `json:"file"`
	Source      string    `json:"source,omitempty"`
	State       string    `json:"state"` // starting, serving, restarting, stopped
	PID         int       `json:"pid"`
	Restarts    uint64    `json:"restarts"`
	Calls       uint64    `json:"calls"`
	Failures    uint64    `json:"failures"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Plugins lists the running process plugins sorted by name and file.
func (h *Host) Plugins() []Status {
	h.mu.Lock()
	procs := make([]*proc, 0, len(h.procs))
	for p := range h.procs {
		procs = append(procs, p)
	}
	h.mu.Unlock()
	out := make([]Status, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.status())
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Name != out[b].Name {
			return out[a].Name < out[b].Name
		}
		return out[a].File < out[b].File
	})
	return out
}
