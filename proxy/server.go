package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/observe"
	"github.com/wasmgate/wasmgate/proxy/upstream"
)

// Options configure a Server.
type Options struct {
	// ConfigPath is the YAML file (re)loaded by Reload.
	ConfigPath string
	// Mode, when set, overrides the config's mode.
	Mode string
	// Logger is the process logger.
	Logger *zap.Logger
	// Registry holds the filter factories.
	Registry *filter.Registry
	// Deps are handed to filter factories.
	Deps filter.Deps
	// Upstream options (metrics, TLS hook) for every cluster set.
	Upstream upstream.Options
	// Observer receives filter decisions.
	Observer filter.Observer
	// PeerID extracts the SPIFFE ID from a verified TLS connection.
	PeerID func(*tls.ConnectionState) string
	// Metrics records request metrics; nil records none.
	Metrics *observe.Metrics
	// AccessLog writes one line per request; nil writes none.
	AccessLog *observe.AccessLog
	// Prepare runs on every loaded config before it is built (the mesh
	// expands its section into listeners, routes and clusters here).
	Prepare func(cfg *config.Config) error
	// OnReload is called after every reload attempt with its result.
	OnReload func(snap *Snapshot, err error)
}

// ReloadStatus is the result of the last reload attempt.
type ReloadStatus struct {
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
}

// Server owns the current Snapshot and serves requests with it.
type Server struct {
	opts    Options
	log     *zap.Logger
	metrics *observe.Metrics
	access  *observe.AccessLog
	peerID  func(*tls.ConnectionState) string
	rp      *httputil.ReverseProxy
	b       *builder

	current  atomic.Pointer[Snapshot]
	reloadMu sync.Mutex
	last     atomic.Pointer[ReloadStatus]
	draining atomic.Bool
}

// New returns a Server with no snapshot; call Reload (or Load) before serving.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registry == nil {
		opts.Registry = filter.NewRegistry()
	}
	if opts.Deps.Logger == nil {
		opts.Deps.Logger = opts.Logger.Named("filter")
	}
	if opts.Upstream.Logger == nil {
		opts.Upstream.Logger = opts.Logger
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger.Named("proxy"),
		metrics: opts.Metrics,
		access:  opts.AccessLog,
		peerID:  opts.PeerID,
		b: &builder{
			registry:  opts.Registry,
			deps:      opts.Deps,
			upstreams: opts.Upstream,
			observer:  opts.Observer,
		},
	}
	s.rp = s.newReverseProxy()
	return s
}

// Snapshot returns the current snapshot (nil before the first load). The
// caller must not keep it beyond the current call.
func (s *Server) Snapshot() *Snapshot { return s.current.Load() }

// LastReload returns the result of the last reload attempt.
func (s *Server) LastReload() ReloadStatus {
	if st := s.last.Load(); st != nil {
		return *st
	}
	return ReloadStatus{}
}

// Ready reports whether a snapshot is serving and the server is not draining.
func (s *Server) Ready() bool { return s.current.Load() != nil && !s.draining.Load() }

// SetDraining marks the server as draining (readiness false).
func (s *Server) SetDraining() { s.draining.Store(true) }

// Reload loads the config file, builds a snapshot and swaps it in. On any
// error the current snapshot keeps serving and the error is returned.
func (s *Server) Reload(ctx context.Context) error {
	cfg, err := config.LoadMode(s.opts.ConfigPath, s.opts.Mode)
	if err != nil {
		s.recordReload(nil, err)
		return err
	}
	return s.Apply(ctx, cfg)
}

// Apply builds a snapshot from an already loaded config and swaps it in.
func (s *Server) Apply(ctx context.Context, cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if old := s.current.Load(); old != nil {
		for _, w := range staticChanges(old.Config, cfg) {
			s.log.Warn("static setting changed; restart to apply", zap.String("setting", w))
		}
	}
	if s.opts.Prepare != nil {
		if err := s.opts.Prepare(cfg); err != nil {
			err = fmt.Errorf("%s: %w", cfg.File, err)
			s.recordReload(nil, err)
			return err
		}
	}
	snap, err := s.b.build(ctx, cfg)
	if err != nil {
		err = fmt.Errorf("%s: %w", cfg.File, err)
		s.recordReload(nil, err)
		return err
	}
	old := s.current.Swap(snap)
	if old != nil {
		old.release()
	}
	s.recordReload(snap, nil)
	return nil
}

func (s *Server) recordReload(snap *Snapshot, err error) {
	st := &ReloadStatus{At: time.Now(), OK: err == nil}
	if err != nil {
		st.Error = err.Error()
		if cur := s.current.Load(); cur != nil {
			st.Version = cur.Version
		}
		s.log.Error("config reload failed; keeping the current config", zap.Error(err))
	} else {
		st.Version = snap.Version
		s.log.Info("config loaded", zap.String("version", snap.Version), zap.Int("routes", len(snap.Table.Routes())), zap.Int("clusters", len(snap.Config.Clusters)))
	}
	s.last.Store(st)
	if s.metrics != nil {
		s.metrics.ReloadDone(err, st.Version)
	}
	if s.opts.OnReload != nil {
		s.opts.OnReload(snap, err)
	}
}

// acquire returns the current snapshot with a request reference taken.
func (s *Server) acquire() *Snapshot {
	for i := 0; i < 100; i++ {
		snap := s.current.Load()
		if snap == nil {
			return nil
		}
		if snap.acquire() {
			return snap
		}
	}
	return nil
}

// Close retires the current snapshot; it is closed when its last request ends.
func (s *Server) Close(ctx context.Context) error {
	snap := s.current.Swap(nil)
	if snap == nil {
		return nil
	}
	snap.release()
	select {
	case <-snap.Closed():
		return snap.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// staticChanges lists settings that changed but need a restart.
func staticChanges(old, cur *config.Config) []string {
	var out []string
	if old.Admin.Address != cur.Admin.Address {
		out = append(out, "admin.address")
	}
	if old.Admin.Pprof != cur.Admin.Pprof {
		out = append(out, "admin.pprof")
	}
	if len(old.Listeners) != len(cur.Listeners) {
		out = append(out, "listeners")
		return out
	}
	for i := range old.Listeners {
		if old.Listeners[i].Address != cur.Listeners[i].Address || old.Listeners[i].Name != cur.Listeners[i].Name {
			out = append(out, fmt.Sprintf("listeners[%d]", i))
		}
	}
	if old.Mode != cur.Mode {
		out = append(out, "mode")
	}
	if old.Store.Kind != cur.Store.Kind || (old.Store.Redis != nil) != (cur.Store.Redis != nil) ||
		(old.Store.Redis != nil && *old.Store.Redis != *cur.Store.Redis) {
		out = append(out, "store")
	}
	return out
}

// ErrNoConfig is returned when serving is asked before any config loaded.
var ErrNoConfig = errors.New("proxy: no config loaded")
