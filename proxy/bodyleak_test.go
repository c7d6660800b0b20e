package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/process"
)

// buildProcessPlugin builds a process plugin (the -tags wasmgate_process
// build of a plugin's source) into dir.
func buildProcessPlugin(t *testing.T, dir, pkg string) string {
	t.Helper()
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-tags", "wasmgate_process", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestBodyFiltersReleaseUpstreamSlots: a filter that buffers the upstream's
// answer (to read or rewrite it) replaced the upstream body with an
// in-memory copy and nobody closed the original, and the upstream call ends
// (its circuit breaker slot, its active_requests count, its connection) only
// when that body is closed. With max_requests: 3 every request from the 4th
// on got 503. 1,000 requests through each body-touching filter kind (Wasm
// response and request body edits, a Wasm guest that reads the response
// buffered by its feature bit, a process plugin that rewrites the
// response, a body over the buffer cap) must all pass, and the cluster's
// active_requests must come back to 0.
func TestBodyFiltersReleaseUpstreamSlots(t *testing.T) {
	transform := wasmbuild.Build(t, "plugins/transform")
	jsonBody := wasmbuild.Build(t, "pluginsdk-examples/json-body")
	all := wasmbuild.Build(t, "proxy/wasm/testdata/guests/all")
	dir := t.TempDir()
	probe := buildProcessPlugin(t, dir, "./proxy/process/testdata/probe")

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upper", "1")
		if r.URL.Path == "/big" {
			_, _ = io.WriteString(w, `{"pad":"`+strings.Repeat("x", 4096)+`"}`)
			return
		}
		_, _ = io.WriteString(w, `{"a":1,"secret":"s"}`)
	}))
	defer up.Close()
	src := fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
wasm: {cache_dir: %s, call_timeout: 5s}
limits: {body_buffer_bytes: 1024}
clusters: [{name: up, endpoints: [%q], circuit_breaker: {max_requests: 3}}]
routes:
  - match: {path: {prefix: /transform-resp}}
    cluster: up
    filters: [{name: t, plugin: %s, config: {response: {body: {remove: [secret], set: {b: 2}}}}}]
  - match: {path: {prefix: /transform-req}}
    cluster: up
    filters: [{name: t, plugin: %s, config: {request: {body: {set: {b: 2}}}}}]
  - match: {path: {prefix: /json-body}}
    cluster: up
    filters: [{name: j, plugin: %s, config: {remove: [secret]}}]
  - match: {path: {prefix: /process}}
    cluster: up
    filters: [{name: p, kind: process, plugin: %s, config: {tag: t}}]
  - match: {path: {prefix: /big}}
    cluster: up
    filters: [{name: t, plugin: %s, config: {response: {body: {remove: [pad]}}}}]
  - match: {path: {prefix: /buffer-feature}}
    cluster: up
    filters: [{name: a, plugin: %s}]
`, wasmbuild.CacheDir(), up.Listener.Addr().String(), transform, transform, jsonBody, probe, transform, all)
	cfg := filepath.Join(dir, "wasmgate.yaml")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var logBuf syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logBuf.String())
		}
	}()
	gw, err := proxy.NewGateway(ctx, proxy.GatewayOptions{
		ConfigPath: cfg, LogOutput: &logBuf, AccessOutput: io.Discard,
		Factories: func(r *filter.Registry, log *zap.Logger) (func(context.Context) error, error) {
			h, err := process.NewHost(process.Options{Logger: log})
			if err != nil {
				return nil, err
			}
			h.Register(r)
			return h.Close, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(sctx)
	}()
	base := "http://" + gw.Listeners()[0].Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/transform-resp", `"b":2`, 200},
		{"/transform-req", `"secret"`, 200},
		{"/json-body", `"secret"`, 200},
		{"/process", `"SECRET"`, 201},        // the probe upper-cases and adds 1 to the status
		{"/big", "", 0},                      // over the cap: the guest's buffering fails (fail_closed 502); the body must still be closed
		{"/buffer-feature", "wrapped:", 202}, // buffers by feature bit, reads and rewrites
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			for i := 0; i < n; i++ {
				req, _ := http.NewRequest("POST", base+tc.path, strings.NewReader(`{"a":1,"secret":"s"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Wrap-Response", "1")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Header.Get("X-Wasmgate-Overloaded") != "" {
					t.Fatalf("request %d: %d overloaded: the upstream slots leaked", i, resp.StatusCode)
				}
				if tc.status != 0 && (resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want)) {
					t.Fatalf("request %d: %d %s, want %d with %s", i, resp.StatusCode, b, tc.status, tc.want)
				}
			}
			waitActive(t, gw.AdminAddr(), 0)
		})
	}
}

// waitActive polls /clusters until the cluster's active_requests is want.
func waitActive(t *testing.T, admin string, want int64) {
	t.Helper()
	var got int64 = -1
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/clusters")
		if err != nil {
			t.Fatal(err)
		}
		var cs []struct {
			ActiveRequests int64 `json:"active_requests"`
		}
		err = json.NewDecoder(resp.Body).Decode(&cs)
		resp.Body.Close()
		if err != nil || len(cs) != 1 {
			t.Fatalf("/clusters: %v %v", cs, err)
		}
		if got = cs[0].ActiveRequests; got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("active_requests = %d, want %d", got, want)
}

// syncBuffer is a bytes.Buffer safe for the gateway's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
