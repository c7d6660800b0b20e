package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/store"
)

type env struct {
	h     *Host
	reg   *prometheus.Registry
	store *store.Memory
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	h, err := NewHost(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{h: h, reg: prometheus.NewRegistry(), store: store.NewMemory()}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
		_ = e.store.Close(context.Background())
	})
	return e
}

func (e *env) build(t *testing.T, name, bin, cfg string) (*Filter, error) {
	t.Helper()
	f, err := e.h.Factory().Build(context.Background(), filter.Spec{
		Name: name, Kind: "process", Path: bin, Config: json.RawMessage(cfg), Source: "test.yaml:1",
	}, filter.Deps{Logger: zap.NewNop(), Metrics: e.reg, Store: e.store, Mode: "edge"})
	if err != nil {
		return nil, err
	}
	return f.(*Filter), nil
}

func (e *env) buildB(b *testing.B, bin, cfg string) (*Filter, error) {
	f, err := e.h.Factory().Build(context.Background(), filter.Spec{
		Name: "bench", Kind: "process", Path: bin, Config: json.RawMessage(cfg),
	}, filter.Deps{Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	return f.(*Filter), nil
}

func (e *env) mustBuild(t *testing.T, name, bin, cfg string) *Filter {
	t.Helper()
	f, err := e.build(t, name, bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

func exchange(method, target, body string) *filter.Exchange {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	return filter.NewExchange(req, filter.Properties{Route: "r1", Mode: "edge", ClientAddr: req.RemoteAddr, Protocol: "HTTP/1.1"})
}

// upstream plays the upstream answer for the response phase.
func upstream(x *filter.Exchange, status int, body string, h map[string]string) {
	x.Response = &filter.Response{StatusCode: status, Header: make(http.Header), Body: io.NopCloser(strings.NewReader(body))}
	for k, v := range h {
		x.Response.Header.Set(k, v)
	}
}

func readBody(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	if rc == nil {
		return ""
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProbeHooks(t *testing.T) {
	e := newEnv(t, Options{})
	f := e.mustBuild(t, "probe", bins["probe"], `{"tag":"t1"}`)

	t.Run("continue with headers, properties and values", func(t *testing.T) {
		x := exchange("GET", "/a?b=1", "")
		x.Request.Header.Set("X-Remove-Me", "1")
		x.SetValue("in", "from-earlier")
		next, err := f.HandleRequest(context.Background(), x)
		if err != nil || !next {
			t.Fatalf("next=%v err=%v", next, err)
		}
		h := x.Request.Header
		for k, want := range map[string]string{"X-Probe": "t1", "X-Route": "r1", "X-In": "from-earlier", "X-Remove-Me": ""} {
			if got := h.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		upstream(x, 200, "hello", map[string]string{"X-Upper": "1"})
		if err := f.HandleResponse(context.Background(), x); err != nil {
			t.Fatal(err)
		}
		if x.Response.StatusCode != 201 || x.Response.Header.Get("X-Probe-Method") != "GET" {
			t.Errorf("response %d %v", x.Response.StatusCode, x.Response.Header)
		}
		if got := readBody(t, x.Response.Body); got != "HELLO" {
			t.Errorf("response body %q", got)
		}
	})
	t.Run("local answer from the request body", func(t *testing.T) {
		x := exchange("POST", "/echo", "shout")
		next, err := f.HandleRequest(context.Background(), x)
		if err != nil || next {
			t.Fatalf("next=%v err=%v", next, err)
		}
		if x.Response.StatusCode != 201 || x.Response.Header.Get("X-Echo") != "1" || readBody(t, x.Response.Body) != "SHOUT" {
			t.Errorf("answer %d %v", x.Response.StatusCode, x.Response.Header)
		}
		// The body was buffered, not consumed: the upstream still gets it.
		if got := readBody(t, x.Request.Body); got != "shout" {
			t.Errorf("request body for upstream %q", got)
		}
	})
	t.Run("rewrite method, uri and body", func(t *testing.T) {
		x := exchange("GET", "/rewrite", "")
		if next, err := f.HandleRequest(context.Background(), x); err != nil || !next {
			t.Fatalf("next=%v err=%v", next, err)
		}
		r := x.Request
		if r.Method != "POST" || r.URL.Path != "/rewritten" || r.URL.RawQuery != "x=1" || r.ContentLength != 8 || readBody(t, r.Body) != "new body" {
			t.Errorf("request %s %s cl=%d", r.Method, r.URL, r.ContentLength)
		}
	})
	t.Run("counters and key values in the host store", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			x := exchange("GET", "/count", "")
			if next, err := f.HandleRequest(context.Background(), x); err != nil || next {
				t.Fatalf("next=%v err=%v", next, err)
			}
			if got := readBody(t, x.Response.Body); got != string(rune('0'+i)) {
				t.Fatalf("count %d: body %q", i, got)
			}
		}
		v, ok, err := e.store.Get(context.Background(), "process/probe/last")
		if err != nil || !ok || string(v) != "3" {
			t.Errorf("store value %q %v %v (keys are namespaced by plugin name)", v, ok, err)
		}
	})
	t.Run("upstream error reaches the response phase", func(t *testing.T) {
		x := exchange("GET", "/", "")
		if _, err := f.HandleRequest(context.Background(), x); err != nil {
			t.Fatal(err)
		}
		upstream(x, 502, "", nil)
		x.IsError = true
		if err := f.HandleResponse(context.Background(), x); err != nil {
			t.Fatal(err)
		}
		if x.Response.Header.Get("X-Probe-Error") != "1" {
			t.Errorf("headers %v", x.Response.Header)
		}
	})
	t.Run("metrics are labelled by plugin", func(t *testing.T) {
		n := gathered(t, e.reg, "probe_hits_total", "probe")
		if n < 5 {
			t.Errorf("probe_hits_total = %v, want >= 5", n)
		}
	})
}

// gathered returns the value of a counter with label plugin=name.
func gathered(t *testing.T, reg *prometheus.Registry, metric, plugin string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{plugin=%q} not found", metric, plugin)
	return 0
}

func TestBuildFailures(t *testing.T) {
	e := newEnv(t, Options{StartTimeout: 3 * time.Second})
	dir := t.TempDir()
	script := filepath.Join(dir, "not-a-plugin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bin, cfg string
		want           string
		is             error
	}{
		{"config refused by the plugin", bins["probe"], `{}`, "tag is required", ErrConfigRefused},
		{"add-header refuses an empty config", bins["add-header"], `{}`, "set at least one header", ErrConfigRefused},
		{"no handshake", script, `{}`, "handshake", nil},
		{"missing file", filepath.Join(dir, "nope"), `{}`, "no such file", nil},
		{"not executable", plain, `{}`, "not an executable", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.build(t, "x", tc.bin, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
	if n := len(e.h.Plugins()); n != 0 {
		t.Errorf("failed builds left %d plugins", n)
	}
	// A pinned sha256 must match the executable.
	b, err := os.ReadFile(bins["probe"])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	for _, pin := range []struct {
		sha string
		ok  bool
	}{{hex.EncodeToString(sum[:]), true}, {strings.Repeat("0", 64), false}} {
		f, err := e.h.Factory().Build(context.Background(), filter.Spec{Name: "pinned", Path: bins["probe"], SHA256: pin.sha, Config: json.RawMessage(`{"tag":"x"}`)}, filter.Deps{})
		if pin.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "does not match")) {
			t.Errorf("sha256 %s…: err = %v", pin.sha[:8], err)
		}
		if f != nil {
			_ = f.(*Filter).Close(context.Background())
		}
	}
	if _, err := ParseSettings(map[string]string{"pool_size": "2"}); err == nil || !strings.Contains(err.Error(), "unknown process setting") {
		t.Errorf("ParseSettings: %v", err)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie still answers kill 0: look at its state.
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func itoa(n int) string { return strconv.Itoa(n) }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRestartAndClose(t *testing.T) {
	e := newEnv(t, Options{})
	f, err := e.build(t, "probe", bins["probe"], `{"tag":"t"}`)
	if err != nil {
		t.Fatal(err)
	}
	st := e.h.Plugins()
	if len(st) != 1 || st[0].State != "serving" || st[0].PID == 0 || st[0].Kind != "process" {
		t.Fatalf("status %+v", st)
	}
	pid1 := st[0].PID

	// The plugin dies mid-request: that request fails (the chain applies the
	// failure policy), the process comes back with a new pid.
	if _, err := f.HandleRequest(context.Background(), exchange("GET", "/crash", "")); err == nil {
		t.Fatal("request that crashed the plugin did not fail")
	}
	waitFor(t, 10*time.Second, "restart", func() bool {
		s := e.h.Plugins()[0]
		return s.State == "serving" && s.PID != 0 && s.PID != pid1 && s.Restarts == 1
	})
	if alive(pid1) {
		t.Errorf("old pid %d still alive", pid1)
	}
	x := exchange("GET", "/", "")
	if next, err := f.HandleRequest(context.Background(), x); err != nil || !next || x.Request.Header.Get("X-Probe") != "t" {
		t.Fatalf("after restart: next=%v err=%v", next, err)
	}
	s := e.h.Plugins()[0]
	if s.LastError == "" || s.Failures == 0 {
		t.Errorf("status lacks the failure: %+v", s)
	}

	// Killed from outside while requests keep coming: restarted too, and
	// requests succeed again once it is back.
	pid2 := s.PID
	stopLoad := make(chan struct{})
	loadDone := make(chan int)
	go func() {
		ok := 0
		for {
			select {
			case <-stopLoad:
				loadDone <- ok
				return
			default:
			}
			if next, err := f.HandleRequest(context.Background(), exchange("GET", "/", "")); err == nil && next {
				ok++
			}
		}
	}()
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "second restart", func() bool {
		s := e.h.Plugins()[0]
		return s.State == "serving" && s.PID != pid2 && s.Restarts == 2
	})
	time.Sleep(50 * time.Millisecond)
	close(stopLoad)
	if ok := <-loadDone; ok == 0 {
		t.Error("no request succeeded around the restart")
	}
	pid3 := e.h.Plugins()[0].PID

	// Close (the snapshot using it retired): the process is gone and the
	// filter fails closed from then on.
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "process exit", func() bool { return !alive(pid3) })
	if n := len(e.h.Plugins()); n != 0 {
		t.Errorf("%d plugins listed after Close", n)
	}
	if _, err := f.HandleRequest(context.Background(), exchange("GET", "/", "")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("after Close: %v, want ErrUnavailable", err)
	}
}

func TestHostCloseStopsAll(t *testing.T) {
	h, err := NewHost(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, name := range []string{"a", "b"} {
		f, err := h.Factory().Build(context.Background(), filter.Spec{Name: name, Path: bins["probe"], Config: json.RawMessage(`{"tag":"x"}`)}, filter.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, f.(*Filter).PID())
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Host.Close", pid)
		}
	}
	if _, err := h.Factory().Build(context.Background(), filter.Spec{Name: "c", Path: bins["probe"], Config: json.RawMessage(`{"tag":"x"}`)}, filter.Deps{}); !errors.Is(err, ErrClosed) {
		t.Errorf("build after close: %v", err)
	}
}

// TestFailurePolicy: a failing process filter gets the chain's failure
// policy like any other filter: a call timeout, and a plugin that is down.
func TestFailurePolicy(t *testing.T) {
	e := newEnv(t, Options{})
	f, err := e.h.Factory().Build(context.Background(), filter.Spec{
		Name: "probe", Path: bins["probe"], Config: json.RawMessage(`{"tag":"t"}`),
		Settings: map[string]string{"call_timeout": "100ms"},
	}, filter.Deps{Logger: zap.NewNop(), Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	pf := f.(*Filter)
	t.Cleanup(func() { _ = pf.Close(context.Background()) })
	closed := &filter.Chain{Entries: []filter.Entry{{Name: "probe", Kind: "process", Filter: pf, FailurePolicy: filter.FailClosed, FailureStatus: 503}}}
	open := &filter.Chain{Entries: []filter.Entry{{Name: "probe", Kind: "process", Filter: pf, FailurePolicy: filter.FailOpen}}}

	x := exchange("GET", "/sleep", "")
	start := time.Now()
	if _, next := closed.RunRequest(context.Background(), x); next || x.Response.StatusCode != 503 {
		t.Fatalf("timeout, fail_closed: next=%v status %d", next, x.Response.StatusCode)
	}
	// The handler sleeps 2s: the 100ms call timeout ended the call first.
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("call took %v with a 100ms call timeout", d)
	}
	x = exchange("GET", "/sleep", "")
	if _, next := open.RunRequest(context.Background(), x); !next || x.Decisions[0].Action != "fail_open" {
		t.Fatalf("timeout, fail_open: next=%v decisions %+v", next, x.Decisions)
	}
	// The plugin still serves after its handler overran.
	waitFor(t, 15*time.Second, "plugin to serve again", func() bool {
		x := exchange("GET", "/", "")
		_, next := closed.RunRequest(context.Background(), x)
		return next && x.Request.Header.Get("X-Probe") == "t"
	})

	if err := pf.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	x = exchange("GET", "/", "")
	if _, next := closed.RunRequest(context.Background(), x); next || x.Response.StatusCode != 503 {
		t.Errorf("down, fail_closed: next=%v status %d", next, x.Response.StatusCode)
	}
	x = exchange("GET", "/", "")
	if _, next := open.RunRequest(context.Background(), x); !next {
		t.Error("down, fail_open: request did not continue")
	}
}
