package filter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Filter runs on the request phase. HandleRequest returns true to continue
// to the next filter (and finally the upstream), or false when the filter
// answered locally through x.Respond / x.Response. An error means the filter
// itself failed (trap, timeout, crash); the chain then applies the filter's
// failure policy.
type Filter interface {
	HandleRequest(ctx context.Context, x *Exchange) (next bool, err error)
}

// ResponseFilter is a Filter that also wants the response phase. The chain
// calls HandleResponse in reverse order for every filter whose HandleRequest
// returned next=true (as http-wasm does), also when the upstream failed
// (x.IsError).
type ResponseFilter interface {
	Filter
	HandleResponse(ctx context.Context, x *Exchange) error
}

// Closer is implemented by filters that hold resources (instances, processes).
// Close is called when the last snapshot that uses the filter is retired.
type Closer interface {
	Close(ctx context.Context) error
}

// FailurePolicy decides what happens to a request when a filter fails.
type FailurePolicy string

// Failure policies.
const (
	FailClosed FailurePolicy = "fail_closed"
	FailOpen   FailurePolicy = "fail_open"
)

// Spec is what the config says about one filter instance on a route.
type Spec struct {
	// Name identifies the filter in logs, metrics and /plugins.
	Name string
	// Kind selects the factory: "wasm", "process" or a builtin name.
	Kind string
	// Path is the plugin file (wasm module or executable), if any.
	Path string
	// SHA256 pins the plugin file's hash (hex), if set.
	SHA256 string
	// Config is the filter's config as JSON.
	Config json.RawMessage
	// FailurePolicy is fail_closed (default) or fail_open.
	FailurePolicy FailurePolicy
	// FailureStatus is the status for fail_closed (default 503).
	FailureStatus int
	// Source is "file:line" of the filter in the config, for error messages.
	Source string
	// Settings are kind-specific knobs (pool_size, memory_limit_mib, ...).
	Settings map[string]string
}

// Deps are the shared services a factory may give to the filters it builds.
type Deps struct {
	Logger  *zap.Logger
	Metrics prometheus.Registerer
	Store   Store
	Mode    string
}

// Store is the slice of proxy/store that filters use (counters and key/values).
// It is defined here, where it is used, so filters do not import proxy/store.
type Store interface {
	// Incr adds delta to the counter key within a window that starts at its
	// first increment and expires after window; it returns the new value and
	// the time left in the window.
	Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error)
	// Get returns the value of key.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores a value with a TTL (0 = no expiry).
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes key.
	Delete(ctx context.Context, key string) error
}

// Factory builds filters of one kind. Build must do all expensive work
// (compile, instantiate, start processes, check config) so that a snapshot
// never goes live with a filter that cannot run.
type Factory interface {
	Build(ctx context.Context, spec Spec, deps Deps) (Filter, error)
}

// FactoryFunc adapts a function to Factory.
type FactoryFunc func(ctx context.Context, spec Spec, deps Deps) (Filter, error)

// Build calls f.
func (f FactoryFunc) Build(ctx context.Context, spec Spec, deps Deps) (Filter, error) {
	return f(ctx, spec, deps)
}

// Registry maps filter kinds to factories. It is built once in main and
// handed to the proxy; it is not a package global.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a factory for kind, replacing any earlier one.
func (r *Registry) Register(kind string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[kind] = f
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.factories))
	for k := range r.factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownKind is returned by Build for a kind nobody registered.
var ErrUnknownKind = errors.New("filter: unknown kind")

// Build builds one filter with the factory for spec.Kind.
func (r *Registry) Build(ctx context.Context, spec Spec, deps Deps) (Filter, error) {
	r.mu.RLock()
	f, ok := r.factories[spec.Kind]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownKind, spec.Kind, r.Kinds())
	}
	flt, err := f.Build(ctx, spec, deps)
	if err != nil {
		return nil, fmt.Errorf("filter %q (%s): %w", spec.Name, spec.Kind, err)
	}
	return flt, nil
}

// EachSetting calls fn for every entry of a Spec's Settings in key order,
// with the value trimmed, and joins the errors fn returns, so every bad
// setting is reported at once and in a stable order.
func EachSetting(m map[string]string, fn func(key, value string) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if err := fn(k, strings.TrimSpace(m[k])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
