// Package admin is wasmgate's admin listener: health and readiness probes,
// Prometheus metrics, the effective config and its reload status, cluster
// and plugin state, a reload trigger and the runtime log level. It binds to
// loopback by default and must not be exposed publicly. Every JSON answer
// and field is documented in docs/admin.md.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Deps are what the admin server reports on and acts upon, as plain
// functions so the proxy can pass method values. A nil function makes its
// endpoint answer 501 (a nil Ready means ready unless draining).
type Deps struct {
	// Logger is the logger; nil means no logging.
	Logger *zap.Logger
	// Ready reports whether a snapshot is serving and the proxy is not draining.
	Ready func() bool
	// Reload loads, validates, builds and swaps a new config; on error the
	// old one keeps serving.
	Reload func(ctx context.Context) error
	// Version returns the serving config version, for POST /reload answers.
	Version func() string
	// Config returns what GET /config shows (a ConfigStatus, see Tracker).
	Config func() any
	// Clusters returns what GET /clusters shows.
	Clusters func() any
	// Plugins returns what GET /plugins shows.
	Plugins func() any
	// Gatherer is the Prometheus registry served on /metrics.
	Gatherer prometheus.Gatherer
	// Level is the process log level that /logging reads and changes.
	Level zap.AtomicLevel
	// Pprof serves net/http/pprof under /debug/pprof/ when true.
	Pprof bool
}

// Server is the admin HTTP server.
type Server struct {
	addr     string
	deps     Deps
	log      *zap.Logger
	draining atomic.Bool
	srv      *http.Server
	handler  http.Handler

	mu    sync.Mutex
	ln    net.Listener
	done  chan struct{}
	start time.Time
}

// New returns an admin server for addr (host:port). It does not listen
// until Start.
func New(addr string, deps Deps) *Server {
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{addr: addr, deps: deps, log: log.Named("admin"), start: time.Now()}
	s.handler = s.routes()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	return s
}

// Handler returns the admin HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds the address and serves in the background. It returns the bind
// error, if any.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.addr, err)
	}
	s.ln, s.done = ln, make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", zap.Error(err))
		}
	}()
	s.log.Info("admin listening", zap.String("address", ln.Addr().String()))
	return nil
}

// Addr returns the bound address; nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr()
	}
	return nil
}

// SetDraining makes /readyz answer 503 (true) so load balancers stop
// sending traffic before the listeners close.
func (s *Server) SetDraining(draining bool) { s.draining.Store(draining) }

// Shutdown stops accepting, waits for open admin requests until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if done != nil {
		<-done
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.deps.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          zap.NewStdLog(s.log),
			ErrorHandling:     promhttp.ContinueOnError,
		}))
	} else {
		mux.HandleFunc("GET /metrics", notImplemented)
	}
	mux.HandleFunc("GET /config", s.config)
	mux.HandleFunc("GET /clusters", s.clusters)
	mux.HandleFunc("GET /plugins", s.plugins)
	mux.HandleFunc("POST /reload", s.reload)
	mux.HandleFunc("GET /logging", s.getLevel)
	mux.HandleFunc("PUT /logging", s.putLevel)
	mux.HandleFunc("POST /logging", s.putLevel)
	if s.deps.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return jsonErrors(mux)
}

// endpoints lists the admin endpoints, as GET / shows them.
var endpoints = []string{
	"GET /healthz", "GET /readyz", "GET /metrics", "GET /config", "GET /clusters",
	"GET /plugins", "POST /reload", "GET /logging", "PUT /logging?level=debug|info|warn|error",
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Endpoints []string `json:"endpoints"`
	}{endpoints})
}

// statusBody is the answer of /healthz and /readyz.
type statusBody struct {
	Status string  `json:"status"`
	Uptime float64 `json:"uptime_seconds"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusBody{Status: "ok", Uptime: time.Since(s.start).Seconds()})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	up := time.Since(s.start).Seconds()
	switch {
	case s.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, statusBody{Status: "draining", Uptime: up})
	case s.deps.Ready != nil && !s.deps.Ready():
		writeJSON(w, http.StatusServiceUnavailable, statusBody{Status: "not_ready", Uptime: up})
	default:
		writeJSON(w, http.StatusOK, statusBody{Status: "ready", Uptime: up})
	}
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	if s.deps.Config == nil {
		notImplemented(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Config())
}

func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	if s.deps.Clusters == nil {
		notImplemented(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Clusters())
}

func (s *Server) plugins(w http.ResponseWriter, r *http.Request) {
	if s.deps.Plugins == nil {
		notImplemented(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Plugins())
}

// reloadBody is the answer of POST /reload.
type reloadBody struct {
	Result   string   `json:"result"`
	Version  string   `json:"version,omitempty"`
	Error    string   `json:"error,omitempty"`
	Errors   []string `json:"errors,omitempty"`
	Duration float64  `json:"duration_seconds"`
}

// statusCoder is implemented by errors that know their HTTP status.
type statusCoder interface {
	HTTPStatus() int
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.deps.Reload == nil {
		notImplemented(w, r)
		return
	}
	// A reload is not abandoned because the client went away.
	ctx := context.WithoutCancel(r.Context())
	start := time.Now()
	err := s.deps.Reload(ctx)
	took := time.Since(start).Seconds()
	if err != nil {
		code := http.StatusUnprocessableEntity
		var sc statusCoder
		switch {
		case errors.As(err, &sc) && sc.HTTPStatus() >= 400:
			code = sc.HTTPStatus()
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			code = http.StatusServiceUnavailable
		}
		s.log.Warn("reload via admin refused", zap.Error(err))
		writeJSON(w, code, reloadBody{Result: "error", Error: err.Error(), Errors: splitLines(err.Error()), Duration: took})
		return
	}
	body := reloadBody{Result: "ok", Duration: took}
	if s.deps.Version != nil {
		body.Version = s.deps.Version()
	}
	s.log.Info("reload via admin applied", zap.String("version", body.Version))
	writeJSON(w, http.StatusOK, body)
}

// levelBody is the answer of GET and PUT /logging.
type levelBody struct {
	Level string `json:"level"`
}

func (s *Server) getLevel(w http.ResponseWriter, r *http.Request) {
	if s.deps.Level == (zap.AtomicLevel{}) {
		notImplemented(w, r)
		return
	}
	writeJSON(w, http.StatusOK, levelBody{Level: s.deps.Level.Level().String()})
}

func (s *Server) putLevel(w http.ResponseWriter, r *http.Request) {
	if s.deps.Level == (zap.AtomicLevel{}) {
		notImplemented(w, r)
		return
	}
	name := r.URL.Query().Get("level")
	if name == "" && r.Body != nil {
		var b levelBody
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&b); err == nil {
			name = b.Level
		}
	}
	var lvl zapcore.Level
	switch name {
	case "debug", "info", "warn", "error":
		_ = lvl.Set(name)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("level must be debug, info, warn or error, got %q", name))
		return
	}
	old := s.deps.Level.Level()
	s.deps.Level.SetLevel(lvl)
	s.log.Info("log level changed", zap.Stringer("from", old), zap.Stringer("to", lvl))
	writeJSON(w, http.StatusOK, levelBody{Level: lvl.String()})
}

func notImplemented(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, r.URL.Path+" is not available in this process")
}

// errorBody is the JSON body of every admin error answer.
type errorBody struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Status: code, Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Status: code, Error: "encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// splitLines splits a (joined) error message into its non-empty lines.
func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// jsonErrors turns the mux's plain-text 404 and 405 answers into JSON ones.
func jsonErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&errorRewriter{ResponseWriter: w}, r)
	})
}

// errorRewriter replaces the body of text/plain 404/405 answers (written by
// http.ServeMux) with the admin JSON error body.
type errorRewriter struct {
	http.ResponseWriter
	swallow bool
}

func (e *errorRewriter) WriteHeader(code int) {
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) &&
		e.Header().Get("Content-Type") == "text/plain; charset=utf-8" {
		e.swallow = true
		e.Header().Del("X-Content-Type-Options")
		msg := "not found"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed; allowed: " + e.Header().Get("Allow")
		}
		writeError(e.ResponseWriter, code, msg)
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorRewriter) Write(b []byte) (int, error) {
	if e.swallow {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController (pprof profiles) the real writer.
func (e *errorRewriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }
