package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/filter/builtin"
)

// testEnv is a proxy Server behind httptest with two echo upstreams.
type testEnv struct {
	srv    *Server
	front  *httptest.Server
	v1, v2 *httptest.Server
	dir    string
}

func newEnv(t *testing.T, routes string, reg *filter.Registry) *testEnv {
	t.Helper()
	e := &testEnv{v1: httptest.NewServer(echo.Handler("v1")), v2: httptest.NewServer(echo.Handler("v2")), dir: t.TempDir()}
	t.Cleanup(e.v1.Close)
	t.Cleanup(e.v2.Close)
	if reg == nil {
		reg = filter.NewRegistry()
	}
	builtin.Register(reg)
	e.srv = New(Options{ConfigPath: filepath.Join(e.dir, "cfg.yaml"), Registry: reg})
	e.write(t, routes)
	if err := e.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.front = httptest.NewServer(e.srv)
	t.Cleanup(func() {
		e.front.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func (e *testEnv) write(t *testing.T, routes string) {
	t.Helper()
	src := `
listeners: [{name: public, address: "127.0.0.1:0"}]
clusters:
  - {name: v1, endpoints: ["` + e.v1.Listener.Addr().String() + `"]}
  - {name: v2, endpoints: ["` + e.v2.Listener.Addr().String() + `"]}
  - {name: dead, endpoints: ["127.0.0.1:1"], retry: {attempts: 1}}
routes:
` + routes
	if err := os.WriteFile(filepath.Join(e.dir, "cfg.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) do(t *testing.T, method, path string, hdr map[string]string, body string) (*http.Response, echo.Reply, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.front.URL+path, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := e.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var rep echo.Reply
	_ = json.Unmarshal(raw, &rep)
	return resp, rep, string(raw)
}

func TestRouting(t *testing.T) {
	e := newEnv(t, `
  - {name: v1, match: {path: {prefix: /v1/}}, cluster: v1}
  - {name: v2, match: {path: {prefix: /v2/}}, cluster: v2}
  - {name: strip, match: {path: {prefix: /public/}}, cluster: v1, strip_prefix: /public}
  - {name: ver, match: {path: {prefix: /api/}}, cluster: v1, versions: [{name: v2, cluster: v2}]}
  - {name: dead, match: {path: {prefix: /dead/}}, cluster: dead}
  - {name: direct, match: {path: {exact: /ping}}, direct: {status: 200, body: pong}}
`, nil)
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		instance, upPath   string
	}{
		{"prefix v1", "GET", "/v1/a", nil, 200, "v1", "/v1/a"},
		{"prefix v2", "GET", "/v2/b?x=1", nil, 200, "v2", "/v2/b"},
		{"strip prefix", "GET", "/public/hello", nil, 200, "v1", "/hello"},
		{"version header", "GET", "/api/x", map[string]string{"Accept-Version": "v2"}, 200, "v2", "/api/x"},
		{"version default", "GET", "/api/x", nil, 200, "v1", "/api/x"},
		{"no route", "GET", "/nope", nil, 404, "", ""},
		{"upstream down", "GET", "/dead/x", nil, 502, "", ""},
		{"direct", "GET", "/ping", nil, 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, rep, raw := e.do(t, tc.method, tc.path, tc.hdr, "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if rep.Instance != tc.instance || (tc.upPath != "" && rep.Path != tc.upPath) {
				t.Fatalf("instance %q path %q, want %q %q", rep.Instance, rep.Path, tc.instance, tc.upPath)
			}
			if resp.StatusCode >= 400 && !strings.Contains(resp.Header.Get("Content-Type"), "json") {
				t.Fatalf("error answer is not JSON: %q", resp.Header.Get("Content-Type"))
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id on the answer")
			}
		})
	}
}

func TestForwardingHeaders(t *testing.T) {
	e := newEnv(t, `  - {match: {path: {prefix: /}}, cluster: v1}`, nil)
	_, rep, _ := e.do(t, "GET", "/x", map[string]string{"X-Forwarded-For": "10.9.9.9", "Connection": "x-hop", "X-Hop": "1", "X-Request-Id": "abc", "Host": "api.test"}, "")
	h := http.Header(rep.Headers)
	if got := h.Get("X-Forwarded-For"); got != "10.9.9.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "api.test" {
		t.Errorf("forwarded proto/host = %q %q", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"))
	}
	if h.Get("X-Hop") != "" {
		t.Error("hop-by-hop header named in Connection was forwarded")
	}
	if h.Get("X-Request-Id") != "abc" || rep.Host != "api.test" {
		t.Errorf("request id %q host %q", h.Get("X-Request-Id"), rep.Host)
	}
}

// failing is a native test filter with switchable behaviour.
type failing struct{ mode string }

func (f *failing) HandleRequest(_ context.Context, x *filter.Exchange) (bool, error) {
	switch f.mode {
	case "error":
		return false, errors.New("boom")
	case "panic":
		panic("kaboom")
	case "deny":
		x.Respond(http.StatusForbidden, http.Header{"Content-Type": {"application/json"}}, []byte(`{"denied":true}`))
		return false, nil
	case "early":
		// Response headers set while continuing reach the client; the
		// upstream's own value wins on a clash.
		x.Response.Header.Set("X-Early", "1")
		x.Response.Header.Set("X-Echo-Instance", "filter")
	case "body":
		b, err := x.RequestBody()
		if err != nil {
			return false, err
		}
		x.SetRequestBody([]byte(strings.ToUpper(string(b))))
	}
	return true, nil
}

func (f *failing) HandleResponse(_ context.Context, x *filter.Exchange) error {
	if f.mode == "body" {
		b, err := x.Response.BufferBody(1 << 20)
		if err != nil {
			return err
		}
		x.Response.SetBody(append([]byte("wrapped:"), b...))
	}
	x.Response.Header.Set("X-Seen-By", f.mode)
	return nil
}

func testRegistry() *filter.Registry {
	reg := filter.NewRegistry()
	reg.Register("test", filter.FactoryFunc(func(_ context.Context, spec filter.Spec, _ filter.Deps) (filter.Filter, error) {
		var c struct{ Mode string }
		_ = json.Unmarshal(spec.Config, &c)
		return &failing{mode: c.Mode}, nil
	}))
	return reg
}

func TestFilterChain(t *testing.T) {
	e := newEnv(t, `
  - {match: {path: {prefix: /closed}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: error}}]}
  - {match: {path: {prefix: /status}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: error}, failure_status: 500}]}
  - {match: {path: {prefix: /open}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: error}, failure_policy: fail_open}]}
  - {match: {path: {prefix: /panic}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: panic}}]}
  - {match: {path: {prefix: /deny}}, cluster: v1, filters: [{name: a, kind: test, config: {mode: ok}}, {name: f, kind: test, config: {mode: deny}}]}
  - {match: {path: {prefix: /body}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: body}}]}
  - {match: {path: {prefix: /early}}, cluster: v1, filters: [{name: f, kind: test, config: {mode: early}}]}
  - {match: {path: {prefix: /hdr}}, cluster: v1, filters: [{name: h, kind: headers, config: {request_set: {x-added: yes}, response_set: {x-resp: yes}}}]}
`, testRegistry())
	tests := []struct {
		path       string
		status     int
		wantHeader [2]string
		bodyHas    string
	}{
		{"/closed", 503, [2]string{}, `"status":503`},
		{"/status", 500, [2]string{}, `"status":500`},
		{"/open", 200, [2]string{}, `"instance":"v1"`},
		{"/panic", 503, [2]string{}, `"status":503`},
		{"/deny", 403, [2]string{"X-Seen-By", "ok"}, `{"denied":true}`},
		{"/body", 200, [2]string{"X-Seen-By", "body"}, `wrapped:{`},
		{"/hdr", 200, [2]string{"X-Resp", "yes"}, `"X-Added":["yes"]`},
		{"/early", 200, [2]string{"X-Early", "1"}, `"instance":"v1"`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, _, raw := e.do(t, "POST", tc.path, nil, "hello")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if tc.wantHeader[0] != "" && resp.Header.Get(tc.wantHeader[0]) != tc.wantHeader[1] {
				t.Fatalf("%s = %q", tc.wantHeader[0], resp.Header.Get(tc.wantHeader[0]))
			}
			if !strings.Contains(raw, tc.bodyHas) {
				t.Fatalf("body %q lacks %q", raw, tc.bodyHas)
			}
		})
	}
	if resp, _, _ := e.do(t, "GET", "/early", nil, ""); resp.Header.Get("X-Echo-Instance") != "v1" {
		t.Fatalf("upstream header lost to a filter's early header: %q", resp.Header.Get("X-Echo-Instance"))
	}
	_, rep, _ := e.do(t, "POST", "/body", nil, "hello")
	if rep.Body != "" {
		t.Fatalf("wrapped body should not decode as a reply")
	}
	resp, _, raw := e.do(t, "POST", "/body", nil, "hello")
	if !strings.Contains(raw, `"body":"HELLO"`) || resp.Header.Get("Content-Length") == "" {
		t.Fatalf("request body not rewritten: %s", raw)
	}
}

// TestReloadKeepsInFlight: a reload swaps the snapshot while a slow request
// is in flight; the request finishes, the old snapshot closes afterwards.
func TestReloadKeepsInFlight(t *testing.T) {
	e := newEnv(t, `  - {match: {path: {prefix: /}}, cluster: v1}`, nil)
	old := e.srv.Snapshot()
	var wg sync.WaitGroup
	wg.Add(1)
	var status int
	var inst string
	go func() {
		defer wg.Done()
		resp, rep, _ := e.do(t, "GET", "/slow?sleep=300ms", nil, "")
		status, inst = resp.StatusCode, rep.Instance
	}()
	deadline := time.Now().Add(5 * time.Second)
	for old.refs.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	e.write(t, `  - {match: {path: {prefix: /}}, cluster: v2}`)
	if err := e.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Closed():
		t.Fatal("old snapshot closed while a request was in flight")
	default:
	}
	wg.Wait()
	if status != 200 || inst != "v1" {
		t.Fatalf("in-flight request: %d from %q, want 200 from v1", status, inst)
	}
	select {
	case <-old.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("old snapshot not closed after its last request")
	}
	if _, rep, _ := e.do(t, "GET", "/x", nil, ""); rep.Instance != "v2" {
		t.Fatalf("after reload: %q, want v2", rep.Instance)
	}
	// A broken config keeps the current one serving.
	e.write(t, `  - {match: {path: {prefix: /}}, cluster: nope}`)
	err := e.srv.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown cluster "nope"`) {
		t.Fatalf("bad reload error = %v", err)
	}
	if st := e.srv.LastReload(); st.OK || st.Error == "" {
		t.Fatalf("last reload status = %+v", st)
	}
	if _, rep, _ := e.do(t, "GET", "/x", nil, ""); rep.Instance != "v2" {
		t.Fatalf("after bad reload: %q, want v2", rep.Instance)
	}
}

func TestLoadRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(p, []byte("listeners: [{name: a, address: \"127.0.0.1:1\"}]\nroutes:\n  - cluster: pay\n"), 0o644)
	s := New(Options{ConfigPath: p})
	err := s.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:3: routes[0].cluster") {
		t.Fatalf("err = %v", err)
	}
	if s.Ready() {
		t.Fatal("server ready without a config")
	}
	_ = config.ModeEdge
}
