// Package config is wasmgate's YAML schema: types, per-mode defaults, Load
// with file:line errors, and Validate with field paths.
package config

import (
	"errors"
	"fmt"
	"time"
)

// Modes.
const (
	ModeEdge    = "edge"
	ModeSidecar = "sidecar"
)

// Config is the whole wasmgate configuration.
type Config struct {
	// Mode is "edge" (API gateway) or "sidecar" (mesh proxy). Default edge.
	Mode string `yaml:"mode"`
	// Listeners are the sockets the proxy serves. Static: restart to change.
	Listeners []Listener `yaml:"listeners"`
	// Admin is the admin listener. Static: restart to change.
	Admin Admin `yaml:"admin"`
	// Logging controls the process log and the access log.
	Logging Logging `yaml:"logging"`
	// Store is where plugins' shared counters and key/values live.
	Store Store `yaml:"store"`
	// Wasm holds runtime-wide Wasm settings and defaults for plugins.
	Wasm Wasm `yaml:"wasm"`
	// DefaultFilters run on every route before the route's own filters,
	// unless the route sets skip_default_filters.
	DefaultFilters []Filter `yaml:"default_filters"`
	// Routes are matched in declared order; the first match wins.
	Routes []Route `yaml:"routes"`
	// Clusters are the upstream services.
	Clusters []Cluster `yaml:"clusters"`
	// Mesh configures sidecar identity and service registry.
	Mesh *Mesh `yaml:"mesh"`
	// Limits bound what a client may send.
	Limits Limits `yaml:"limits"`
	// Shutdown controls graceful shutdown.
	Shutdown Shutdown `yaml:"shutdown"`
	// Paths controls request path normalisation before routing.
	Paths Paths `yaml:"paths"`

	// File is the path the config was loaded from (not YAML).
	File string `yaml:"-"`
	// Source is the raw bytes the config was loaded from (not YAML).
	Source []byte `yaml:"-"`
	// lines maps field paths to line numbers (not YAML).
	lines map[string]int
}

// Admin is the admin listener.
type Admin struct {
	// Address to listen on; default 127.0.0.1:9901. Empty string "off" disables it.
	Address string `yaml:"address"`
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener.
	// Off by default: profiles expose internals and cost CPU while taken.
	Pprof bool `yaml:"pprof"`
}

// Logging configures zap and the access log.
type Logging struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json (default) or console.
	Format string `yaml:"format"`
	// AccessLog configures the per-request log line.
	AccessLog AccessLog `yaml:"access_log"`
}

// AccessLog configures access logging.
type AccessLog struct {
	// Enabled turns access logging on. Default true.
	Enabled *bool `yaml:"enabled"`
	// Path is a file to append to; empty or "stdout" logs to stdout.
	Path string `yaml:"path"`
	// Sample is the fraction of requests logged, 0 < sample <= 1. Default 1.
	Sample float64 `yaml:"sample"`
}

// Store selects the backend for plugin counters and key/values.
type Store struct {
	// Kind is memory (default) or redis.
	Kind string `yaml:"kind"`
	// Redis is used when kind is redis.
	Redis *Redis `yaml:"redis"`
}

// Redis is a Redis connection.
type Redis struct {
	// Address is host:port of the Redis server.
	Address string `yaml:"address"`
	// Password for AUTH, if any. Redacted on /config.
	Password string `yaml:"password"`
	// DB is the Redis database number.
	DB int `yaml:"db"`
	// Timeout bounds each Redis command. Default 50ms.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the connection pool size. Default 10 per core.
	PoolSize int `yaml:"pool_size"`
	// FailurePolicy when Redis is unreachable: fail_open (fall back to a
	// local store, default) or fail_closed (errors go to the plugin).
	FailurePolicy string `yaml:"failure_policy"`
}

// Wasm holds Wasm runtime settings; per-filter values override the defaults.
type Wasm struct {
	// CacheDir holds compiled modules; default under the user cache dir.
	CacheDir string `yaml:"cache_dir"`
	// MemoryLimitMiB caps each instance's memory. Default 32.
	MemoryLimitMiB uint32 `yaml:"memory_limit_mib"`
	// CallTimeout bounds one guest call. Default 20ms.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// PoolSize is the number of instances per plugin. Default GOMAXPROCS.
	PoolSize int `yaml:"pool_size"`
	// PoolWait is how long a request waits for a free instance. Default 50ms.
	PoolWait time.Duration `yaml:"pool_wait"`
	// InitTimeout bounds a guest's start-up (_initialize and its config
	// check) at load time, off the request path. Default 30s.
	InitTimeout time.Duration `yaml:"init_timeout"`
}

// Limits bound client input.
type Limits struct {
	// MaxHeaderBytes is the largest request header block; larger gets 431. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout cuts clients slow to send headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// BodyBufferBytes caps body buffering for filters. Default 4 MiB.
	BodyBufferBytes int64 `yaml:"body_buffer_bytes"`
}

// Shutdown controls graceful shutdown.
type Shutdown struct {
	// DrainTimeout is how long in-flight requests may finish. Default 15s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// FieldError is one semantic problem at a field path.
type FieldError struct {
	Path string
	Msg  string
	Line int
	File string
}

func (e *FieldError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Path, e.Msg)
	case e.Path != "":
		return e.Path + ": " + e.Msg
	}
	return e.Msg
}

// problems collects FieldErrors.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p problems) err() error { return errors.Join(p...) }
