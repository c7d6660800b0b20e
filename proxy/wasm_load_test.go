package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

// rssBytes reads this process's resident set size from /proc.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Skip("VmRSS not found")
	return 0
}

// TestWasmSlowRequestsBoundedInstances: 500 concurrent slow requests (the
// upstream sleeps 1s) through a one-plugin route. Instances are held only
// while guest code runs, so the pool never grows past 4 x GOMAXPROCS, every
// request succeeds, and memory stays bounded.
func TestWasmSlowRequestsBoundedInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("500 concurrent requests")
	}
	plugin := wasmbuild.Build(t, "pluginsdk-examples/add-header")
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir(), CallTimeout: 2 * time.Second, PoolWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Added")+"\n")
	}))
	defer up.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte(`
listeners: [{name: public, address: "127.0.0.1:0"}]
clusters: [{name: up, endpoints: ["`+up.Listener.Addr().String()+`"], circuit_breaker: {max_requests: 1000}}]
routes:
  - match: {path: {prefix: /}}
    cluster: up
    filters: [{name: add, plugin: `+plugin+`, config: {request: {X-Added: "yes"}}}]
`), 0o644)
	reg := filter.NewRegistry()
	reg.Register("wasm", host.Factory())
	s := New(Options{ConfigPath: cfg, Registry: reg})
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	front := httptest.NewServer(s)
	defer front.Close()

	before := rssBytes(t)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 500}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	const n = 500
	var ok atomic.Int64
	var peakRSS, peakInUse atomic.Int64
	stop := make(chan struct{})
	var mon sync.WaitGroup
	mon.Add(1)
	go func() {
		defer mon.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if r := rssBytes(t); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			for _, p := range host.Plugins() {
				if n := p.InUse + int64(p.Idle); n > peakInUse.Load() {
					peakInUse.Store(n)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(front.URL + "/slow")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "yes" {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	mon.Wait()

	if ok.Load() != n {
		t.Fatalf("%d of %d slow requests succeeded through the plugin", ok.Load(), n)
	}
	limit := int64(4 * runtime.GOMAXPROCS(0))
	var pool int
	for _, p := range host.Plugins() {
		pool = p.PoolSize
	}
	if int64(pool) > limit || peakInUse.Load() > limit {
		t.Fatalf("live instances: pool %d, peak %d, want at most %d", pool, peakInUse.Load(), limit)
	}
	t.Logf("instances: pool %d, peak %d (limit %d); RSS before %d MiB, peak %d MiB", pool, peakInUse.Load(), limit, before>>20, peakRSS.Load()>>20)
	// The race detector keeps shadow memory for every goroutine and heap
	// byte, so the bound is checked in the run without it (make test runs
	// this test once more without -race).
	if raceEnabled {
		return
	}
	if bound := int64(300 << 20); peakRSS.Load() > bound {
		t.Fatalf("RSS %d MiB over the %d MiB bound", peakRSS.Load()>>20, bound>>20)
	}
}
