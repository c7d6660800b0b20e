// Package store holds the shared counters and key/values that plugins use
// (the rate-limit primitive): an in-process memory store, the default, and a
// Redis store that makes counters global across every proxy instance sharing
// the Redis, with a local fallback and an explicit policy when Redis is down.
//
// Both backends implement filter.Store. Local keys never leave the process,
// whatever the backend: a plugin uses them to keep a per-instance limit, for
// example as its own fallback when the shared store fails (fail_closed store
// policy). See IsLocal.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// LocalPrefix marks keys that are always kept in the process-local memory
// store, also when the backend is Redis; see IsLocal.
const LocalPrefix = "local:"

// IsLocal reports whether key is process-local: it starts with LocalPrefix,
// or LocalPrefix follows a two-segment namespace "<kind>/<name>/" (proxy/wasm
// stores a guest's key k as "wasm/<filter>/k", so a guest asks for a local
// counter with "local:..."). Only the namespace's first two slashes count, so
// request data inside a key cannot make it local.
func IsLocal(key string) bool {
	if strings.HasPrefix(key, LocalPrefix) {
		return true
	}
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return false
	}
	rest := key[i+1:]
	j := strings.IndexByte(rest, '/')
	return j >= 0 && strings.HasPrefix(rest[j+1:], LocalPrefix)
}

// ErrUnavailable is returned (wrapped) by the Redis store when Redis cannot be
// reached and the failure policy is fail_closed.
var ErrUnavailable = errors.New("store: backend unavailable")

// ErrNotInteger is returned by Incr when the key holds a value that is not an
// integer counter.
var ErrNotInteger = errors.New("store: value is not an integer")

// Store is a filter.Store that owns resources and must be closed.
type Store interface {
	filter.Store
	// Close stops background goroutines and closes connections.
	Close(ctx context.Context) error
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// New builds the backend selected by cfg.Kind ("memory", the default, or
// "redis"). The Redis backend does not fail when Redis is unreachable at
// start: it starts degraded, applies its failure policy and recovers when
// Redis answers. reg may be nil (no metrics).
func New(ctx context.Context, cfg config.Store, log *zap.Logger, reg prometheus.Registerer) (Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	switch cfg.Kind {
	case "", "memory":
		return NewMemory(), nil
	case "redis":
		if cfg.Redis == nil {
			return nil, fmt.Errorf("store: kind redis needs store.redis")
		}
		return NewRedis(ctx, *cfg.Redis, RedisOptions{Logger: log, Registerer: reg})
	default:
		return nil, fmt.Errorf("store: unknown kind %q (want memory or redis)", cfg.Kind)
	}
}
