package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// TestGatewayAdminPlugins: /plugins lists the Wasm plugins with their kind
// and time split, then the plugins of extra kinds (process plugins).
func TestGatewayAdminPlugins(t *testing.T) {
	plugin := wasmbuild.Build(t, "pluginsdk-examples/add-header")
	up := httptest.NewServer(echo.Handler("v1"))
	defer up.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	_ = os.WriteFile(cfg, []byte(`
listeners: [{name: public, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0", pprof: true}
wasm: {cache_dir: `+wasmbuild.CacheDir()+`, call_timeout: 2s}
clusters: [{name: up, endpoints: ["`+up.Listener.Addr().String()+`"]}]
routes: [{match: {path: {prefix: /}}, cluster: up, filters: [{name: add, plugin: `+plugin+`, config: {request: {x-a: "1"}}}]}]
`), 0o644)
	ctx := context.Background()
	g, err := NewGateway(ctx, GatewayOptions{
		ConfigPath: cfg, LogOutput: io.Discard, AccessOutput: io.Discard,
		PluginStatus: func() []any { return []any{map[string]string{"kind": "process", "name": "ext"}} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	}()
	resp, err := http.Get("http://" + g.Listeners()[0].Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + g.AdminAddr() + "/plugins")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decode /plugins: %v", err)
	}
	if len(got) != 2 || got[0]["kind"] != "wasm" || got[0]["name"] != "add" || got[1]["kind"] != "process" {
		t.Fatalf("/plugins = %v", got)
	}
	if calls, _ := got[0]["calls"].(float64); calls < 1 {
		t.Fatalf("wasm plugin calls = %v after one request", got[0]["calls"])
	}
	if ns, _ := got[0]["call_ns_total"].(float64); ns <= 0 {
		t.Fatalf("call_ns_total = %v", got[0]["call_ns_total"])
	}
	// admin.pprof: true turns the profiler on (admin tests cover "off").
	pp, err := http.Get("http://" + g.AdminAddr() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	pp.Body.Close()
	if pp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/pprof/cmdline with admin.pprof: true = %d", pp.StatusCode)
	}
}
