package plugintest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

// Filter is one plugin of a chain built by NewChain.
type Filter struct {
	// Plugin is the directory name under plugins/.
	Plugin string
	// Config is the plugin's JSON config.
	Config string
}

// NewChain builds the plugins as one filter chain on a new Wasm host, for
// benchmarks that measure the plugins without HTTP. Everything is closed
// when the test ends.
func NewChain(t testing.TB, filters ...Filter) *filter.Chain {
	t.Helper()
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), CallTimeout: time.Second, PoolWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := &filter.Chain{}
	t.Cleanup(func() {
		_ = c.Close(ctx)
		_ = host.Close(ctx)
	})
	for _, f := range filters {
		flt, err := host.Factory().Build(ctx, filter.Spec{Name: f.Plugin, Kind: "wasm", Path: Plugin(t, f.Plugin), Config: []byte(f.Config)}, filter.Deps{})
		if err != nil {
			t.Fatalf("plugintest: build %s: %v", f.Plugin, err)
		}
		c.Entries = append(c.Entries, filter.Entry{Name: f.Plugin, Kind: "wasm", Filter: flt})
	}
	return c
}

// RunChain runs one request through the chain's request and response
// phases and reports whether the request went on upstream, with the
// local answer's status otherwise.
func RunChain(ctx context.Context, c *filter.Chain, r *http.Request) (next bool, status int) {
	x := filter.NewExchange(r, filter.Properties{RequestID: "bench", ClientIP: "192.0.2.1", ClientAddr: "192.0.2.1:1234", Route: "bench"})
	ran, next := c.RunRequest(ctx, x)
	if !next {
		return false, x.Response.StatusCode
	}
	c.RunResponse(ctx, x, ran)
	return true, 0
}
