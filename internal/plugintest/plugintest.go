// Package plugintest runs the shipped plugins through the real proxy in
// integration tests: a proxy.Server with the Wasm host registered as filter
// kind "wasm", plugins built from source by internal/wasmbuild, and an echo
// upstream that reports what it received.
package plugintest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

// Env is a running proxy in front of an echo upstream.
type Env struct {
	// URL is the proxy's base URL.
	URL string
	// Dir holds the config file; tests may put files (a JWKS) beside it.
	Dir string

	srv   *proxy.Server
	front *httptest.Server
}

// Plugin builds plugins/<name> to .wasm (once per test binary and source
// hash) and returns its path.
func Plugin(t testing.TB, name string) string {
	t.Helper()
	return wasmbuild.Build(t, "plugins/"+name)
}

// Start writes a config with one cluster "echo" and the given routes (YAML
// list items, indented by two spaces), and serves it. files are written to
// Dir first (name -> content), so routes may refer to them.
func Start(t testing.TB, routes string, files map[string]string) *Env {
	t.Helper()
	ctx := context.Background()
	up := httptest.NewServer(echo.Handler("echo"))
	t.Cleanup(up.Close)
	e := &Env{Dir: t.TempDir()}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.Dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `listeners: [{name: public, address: "127.0.0.1:0"}]
clusters:
  - {name: echo, endpoints: ["` + up.Listener.Addr().String() + `"]}
routes:
` + routes
	path := filepath.Join(e.Dir, "wasmgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), Logger: log, PoolWait: time.Second, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := filter.NewRegistry()
	reg.Register("wasm", host.Factory())
	e.srv = proxy.New(proxy.Options{ConfigPath: path, Registry: reg, Logger: log})
	if err := e.srv.Reload(ctx); err != nil {
		_ = host.Close(ctx)
		t.Fatalf("plugintest: load config: %v\n%s", err, cfg)
	}
	e.front = httptest.NewServer(e.srv)
	e.URL = e.front.URL
	t.Cleanup(func() {
		e.front.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Close(ctx); err != nil {
			t.Errorf("plugintest: close server: %v", err)
		}
		if err := host.Close(ctx); err != nil {
			t.Errorf("plugintest: close wasm host: %v", err)
		}
	})
	return e
}

// Reply is one response through the proxy.
type Reply struct {
	Status int
	Header http.Header
	Body   string
	// Echo is what the upstream saw; zero when the proxy answered itself.
	Echo echo.Reply
}

// JSON decodes the body into v and fails the test on error.
func (r Reply) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("plugintest: body %q is not JSON: %v", r.Body, err)
	}
}

// Do sends one request through the proxy.
func (e *Env) Do(t testing.TB, method, target string, header map[string]string, body string) Reply {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(raw)}
	if r.Status < 300 && strings.Contains(r.Body, `"instance":"echo"`) {
		_ = json.Unmarshal(raw, &r.Echo)
	}
	return r
}

// ReloadError writes a new routes section and returns the reload error
// (nil when the proxy accepted it).
func (e *Env) ReloadError(t testing.TB, routes string) error {
	t.Helper()
	path := filepath.Join(e.Dir, "wasmgate.yaml")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(old), "routes:\n")
	if err := os.WriteFile(path, []byte(head+"routes:\n"+routes), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.srv.Reload(context.Background())
}
