package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/proxy/config"
)

const testConfig = `
mode: edge
listeners:
  - name: public
    address: 127.0.0.1:0
store:
  kind: redis
  redis:
    address: 127.0.0.1:6379
    password: hunter2
routes:
  - name: api
    match: {path: {prefix: /}}
    cluster: users
    filters:
      - name: keys
        kind: builtin-test
        config:
          header: X-API-Key
          key_header: X-API-Key
          keys: [k1, k2]
          api_keys: {alice: abc}
          hmac_secret: s3cr3t
          upstream: "https://bob:pw@example.com/jwks"
          nested: {access_token: t, note: keep}
          empty_secret: ""
clusters:
  - name: users
    endpoints: [127.0.0.1:8080]
`

// fakeProxy is the proxy side the admin server talks to.
type fakeProxy struct {
	ready   atomic.Bool
	reloads atomic.Int32
	err     error
	tracker *Tracker
}

func (f *fakeProxy) Ready() bool { return f.ready.Load() }

func (f *fakeProxy) Reload(context.Context) error {
	f.reloads.Add(1)
	if f.err != nil {
		f.tracker.ReloadFailed(f.err)
		return f.err
	}
	f.tracker.ReloadOK(nil, "v2", nil)
	return nil
}

func (f *fakeProxy) Clusters() any {
	return []map[string]any{{"name": "users", "endpoints": []any{}}}
}

// statusErr is an error that chooses its HTTP status.
type statusErr struct{ code int }

func (e statusErr) Error() string   { return fmt.Sprintf("status %d", e.code) }
func (e statusErr) HTTPStatus() int { return e.code }

type env struct {
	srv   *Server
	base  string
	proxy *fakeProxy
	level zap.AtomicLevel
}

func newEnv(t *testing.T, deps Deps) *env {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	tr.Loaded(cfg, "v1", []string{"something odd"})
	p := &fakeProxy{tracker: tr}
	p.ready.Store(true)
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "wasmgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(7)
	if deps.Logger == nil {
		deps = Deps{Logger: zaptest.NewLogger(t), Ready: p.Ready, Reload: p.Reload, Version: tr.Version,
			Config: tr.ConfigStatus, Clusters: p.Clusters, Gatherer: reg, Level: lvl}
	}
	s := New("127.0.0.1:0", deps)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return &env{srv: s, base: "http://" + s.Addr().String(), proxy: p, level: lvl}
}

func (e *env) do(t *testing.T, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %q", b)
	}
	return m
}

func TestProbes(t *testing.T) {
	e := newEnv(t, Deps{})
	code, h, b := e.do(t, "GET", "/healthz", "")
	if code != 200 || decode(t, b)["status"] != "ok" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("healthz = %d %s", code, b)
	}
	tests := []struct {
		name     string
		ready    bool
		draining bool
		code     int
		status   string
	}{
		{"ready", true, false, 200, "ready"},
		{"no snapshot", false, false, 503, "not_ready"},
		{"draining", true, true, 503, "draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.proxy.ready.Store(tt.ready)
			e.srv.SetDraining(tt.draining)
			code, _, b := e.do(t, "GET", "/readyz", "")
			if code != tt.code || decode(t, b)["status"] != tt.status {
				t.Fatalf("readyz = %d %s, want %d %s", code, b, tt.code, tt.status)
			}
		})
	}
	// Liveness does not depend on readiness.
	if code, _, _ := e.do(t, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz while draining = %d", code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, Deps{})
	code, _, b := e.do(t, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(b), "wasmgate_test_total 7") {
		t.Fatalf("metrics = %d %s", code, b)
	}
}

func TestConfigEndpointRedacts(t *testing.T) {
	e := newEnv(t, Deps{})
	code, _, b := e.do(t, "GET", "/config", "")
	if code != 200 {
		t.Fatalf("config = %d %s", code, b)
	}
	for _, secret := range []string{"hunter2", "k1", "abc", "s3cr3t", ":pw@", `"t"`} {
		if strings.Contains(string(b), secret) {
			t.Errorf("/config leaks %q", secret)
		}
	}
	m := decode(t, b)
	if m["version"] != "v1" || m["file"] != "test.yaml" || m["last_reload"] != nil {
		t.Fatalf("status fields = %v %v %v", m["version"], m["file"], m["last_reload"])
	}
	if w, _ := m["warnings"].([]any); len(w) != 1 {
		t.Fatalf("warnings = %v", m["warnings"])
	}
	cfg := m["config"].(map[string]any)
	redis := cfg["store"].(map[string]any)["redis"].(map[string]any)
	if redis["password"] != Redacted || redis["address"] != "127.0.0.1:6379" || redis["timeout"] != "50ms" {
		t.Fatalf("redis = %v", redis)
	}
	fc := cfg["routes"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["config"].(map[string]any)
	want := map[string]any{
		"header": "X-API-Key", "key_header": "X-API-Key", "keys": Redacted, "api_keys": Redacted,
		"hmac_secret": Redacted, "upstream": "https://bob:redacted@example.com/jwks", "empty_secret": "",
	}
	for k, v := range want {
		if fc[k] != v {
			t.Errorf("filter config %s = %v, want %v", k, fc[k], v)
		}
	}
	if n := fc["nested"].(map[string]any); n["access_token"] != Redacted || n["note"] != "keep" {
		t.Errorf("nested = %v", n)
	}
}

func TestReload(t *testing.T) {
	e := newEnv(t, Deps{})
	code, _, b := e.do(t, "POST", "/reload", "")
	if m := decode(t, b); code != 200 || m["result"] != "ok" || m["version"] != "v2" {
		t.Fatalf("reload = %d %s", code, b)
	}
	_, _, b = e.do(t, "GET", "/config", "")
	lr := decode(t, b)["last_reload"].(map[string]any)
	if lr["result"] != "ok" || lr["version"] != "v2" {
		t.Fatalf("last_reload = %v", lr)
	}

	tests := []struct {
		name   string
		err    error
		code   int
		nLines int
	}{
		{"invalid config", errors.Join(errors.New("c.yaml:3: routes[0].cluster: unknown cluster \"x\""), errors.New("c.yaml:9: mode: bad")), 422, 2},
		{"typed status", fmt.Errorf("wrapped: %w", statusErr{500}), 500, 1},
		{"timeout", fmt.Errorf("build: %w", context.DeadlineExceeded), 503, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.proxy.err = tt.err
			code, _, b := e.do(t, "POST", "/reload", "")
			m := decode(t, b)
			if code != tt.code || m["result"] != "error" || m["error"] != tt.err.Error() {
				t.Fatalf("reload = %d %s", code, b)
			}
			if errs, _ := m["errors"].([]any); len(errs) != tt.nLines {
				t.Fatalf("errors = %v", m["errors"])
			}
			_, _, b = e.do(t, "GET", "/config", "")
			st := decode(t, b)
			if st["version"] != "v2" || st["last_reload"].(map[string]any)["result"] != "error" {
				t.Fatalf("config after failed reload = %v", st)
			}
		})
	}
	before := e.proxy.reloads.Load()
	code, h, b := e.do(t, "GET", "/reload", "")
	if code != 405 || !strings.Contains(h.Get("Allow"), "POST") || decode(t, b)["status"] != 405.0 {
		t.Fatalf("GET /reload = %d %v %s", code, h, b)
	}
	if e.proxy.reloads.Load() != before {
		t.Fatal("GET /reload reloaded")
	}
}

func TestLogging(t *testing.T) {
	e := newEnv(t, Deps{})
	code, _, b := e.do(t, "GET", "/logging", "")
	if code != 200 || decode(t, b)["level"] != "info" {
		t.Fatalf("GET /logging = %d %s", code, b)
	}
	tests := []struct {
		name, method, path, body string
		code                     int
		level                    string
	}{
		{"query", "PUT", "/logging?level=debug", "", 200, "debug"},
		{"json body", "PUT", "/logging", `{"level":"warn"}`, 200, "warn"},
		{"post", "POST", "/logging?level=error", "", 200, "error"},
		{"bad level", "PUT", "/logging?level=loud", "", 400, "error"},
		{"missing level", "PUT", "/logging", "", 400, "error"},
		{"delete", "DELETE", "/logging", "", 405, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := e.do(t, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("%s %s = %d %s", tt.method, tt.path, code, b)
			}
			if got := e.level.Level().String(); got != tt.level {
				t.Fatalf("level = %s, want %s", got, tt.level)
			}
		})
	}
}

func TestMissingDepsAndUnknownPaths(t *testing.T) {
	e := newEnv(t, Deps{Logger: zaptest.NewLogger(t)})
	for _, p := range []struct{ method, path string }{
		{"GET", "/config"}, {"GET", "/clusters"}, {"GET", "/plugins"}, {"POST", "/reload"},
		{"GET", "/logging"}, {"GET", "/metrics"},
	} {
		code, _, b := e.do(t, p.method, p.path, "")
		if code != 501 || decode(t, b)["status"] != 501.0 {
			t.Errorf("%s %s = %d %s", p.method, p.path, code, b)
		}
	}
	// Without a Ready dependency the proxy counts as ready.
	if code, _, _ := e.do(t, "GET", "/readyz", ""); code != 200 {
		t.Errorf("readyz = %d", code)
	}
	code, _, b := e.do(t, "GET", "/nope", "")
	if code != 404 || decode(t, b)["error"] != "not found" {
		t.Errorf("unknown path = %d %s", code, b)
	}
	code, _, b = e.do(t, "GET", "/", "")
	if code != 200 || len(decode(t, b)["endpoints"].([]any)) == 0 {
		t.Errorf("index = %d %s", code, b)
	}
	if code, _, _ := e.do(t, "GET", "/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof served without Pprof: %d", code)
	}
}

func TestClustersAndPprof(t *testing.T) {
	p := &fakeProxy{}
	e := newEnv(t, Deps{Logger: zaptest.NewLogger(t), Clusters: p.Clusters, Pprof: true})
	code, _, b := e.do(t, "GET", "/clusters", "")
	if code != 200 || !strings.Contains(string(b), `"users"`) {
		t.Fatalf("clusters = %d %s", code, b)
	}
	if code, _, _ := e.do(t, "GET", "/debug/pprof/goroutine?debug=1", ""); code != 200 {
		t.Fatalf("pprof = %d", code)
	}
}

func TestStartErrors(t *testing.T) {
	e := newEnv(t, Deps{})
	if err := e.srv.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	other := New(e.srv.Addr().String(), Deps{})
	if err := other.Start(context.Background()); err == nil {
		t.Fatal("Start on a used address succeeded")
	}
	if other.Addr() != nil {
		t.Fatal("Addr of an unstarted server")
	}
	if err := other.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of an unstarted server = %v", err)
	}
}
