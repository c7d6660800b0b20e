package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
)

// replaceFile installs src at dst the way docs/plugins.md tells authors to:
// write a temporary file next to it and rename it over the old one.
func replaceFile(t *testing.T, dst string, data []byte) {
	t.Helper()
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wasmgate_config_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestPluginsThroughGatewayAndHotReload runs SDK plugins in the real proxy
// from a YAML config, as docs/plugins.md describes: a route with two
// plugin filters, then hot reloads of one plugin file. A file that does not
// compile and a module that refuses its config leave the old version
// serving; a good new version replaces it without a restart.
func TestPluginsThroughGatewayAndHotReload(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s|%s", r.Header.Get("X-Guard"), r.Header.Get("X-Gw"))
	}))
	defer be.Close()

	dir := t.TempDir()
	guard := filepath.Join(dir, "plugins", "guard.wasm")
	if err := os.MkdirAll(filepath.Dir(guard), 0o755); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, guard, readFile(t, wasmbuild.Build(t, "sdk/testdata/guardv1")))
	addHeader := filepath.Join(dir, "plugins", "add-header.wasm")
	replaceFile(t, addHeader, readFile(t, wasmbuild.Build(t, "pluginsdk-examples/add-header")))
	v2 := readFile(t, wasmbuild.Build(t, "sdk/testdata/guardv2"))

	cfgPath := filepath.Join(dir, "wasmgate.yaml")
	cfg := fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:0"}]
logging: {level: error, access_log: {enabled: false}}
wasm: {cache_dir: %q, call_timeout: 1s, pool_size: 1}
clusters: [{name: app, endpoints: [%q]}]
routes:
  - name: all
    match: {path: {prefix: /}}
    cluster: app
    filters:
      - name: guard
        plugin: plugins/guard.wasm
        config: {deny: /admin}
      - plugin: plugins/add-header.wasm
        config:
          request: {X-Gw: "1"}
          response: {X-Served-By: wasmgate}
`, wasmbuild.CacheDir(), be.Listener.Addr().String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := proxy.NewGateway(ctx, proxy.GatewayOptions{ConfigPath: cfgPath, LogOutput: io.Discard, AccessOutput: io.Discard})
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer func() {
		if err := g.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	base := "http://" + g.Listeners()[0].Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	check := func(version string) {
		t.Helper()
		code, body, hdr := get("/ok")
		if code != 200 || body != version+"|1" || hdr.Get("X-Served-By") != "wasmgate" {
			t.Fatalf("GET /ok = %d %q %v, want 200 %q with X-Served-By", code, body, hdr, version+"|1")
		}
		code, body, hdr = get("/admin")
		if code != 403 || hdr.Get("Content-Type") != "application/json" || !strings.Contains(body, `"version":"`+version+`"`) {
			t.Fatalf("GET /admin = %d %q, want 403 JSON from %s", code, body, version)
		}
	}
	check("v1")

	// waitReload waits for one more reload with the given result.
	waitReload := func(result string, before float64) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for reloads(t, g.Registry, result) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("no %s reload within the deadline", result)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Not a Wasm file: refused, v1 keeps serving.
	errs := reloads(t, g.Registry, "error")
	replaceFile(t, guard, []byte("not wasm"))
	waitReload("error", errs)
	check("v1")

	// A module that refuses the route's config (add-header does not know
	// "deny"): refused, v1 keeps serving.
	errs = reloads(t, g.Registry, "error")
	replaceFile(t, guard, readFile(t, addHeader))
	waitReload("error", errs)
	check("v1")

	// The new version: swapped in without a restart.
	oks := reloads(t, g.Registry, "ok")
	replaceFile(t, guard, v2)
	waitReload("ok", oks)
	check("v2")
}
