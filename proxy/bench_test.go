package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/filter/builtin"
)

// BenchmarkProxy measures one request through the proxy over loopback to a
// trivial upstream; BenchmarkDirect is the same request without the proxy.
// Compare the two in one run: go test -bench 'Proxy|Direct' ./proxy
func BenchmarkProxy(b *testing.B) {
	for _, tc := range []struct{ name, filters string }{
		{"bare", ""},
		{"native-filter", ", filters: [{name: h, kind: headers, config: {request_set: {x-a: b}}}]"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "ok")
			}))
			defer up.Close()
			dir := b.TempDir()
			cfg := filepath.Join(dir, "c.yaml")
			_ = os.WriteFile(cfg, []byte(`
listeners: [{name: public, address: "127.0.0.1:0"}]
clusters: [{name: up, endpoints: ["`+up.Listener.Addr().String()+`"]}]
routes: [{match: {path: {prefix: /}}, cluster: up`+tc.filters+`}]
logging: {access_log: {enabled: false}}
`), 0o644)
			reg := filter.NewRegistry()
			builtin.Register(reg)
			s := New(Options{ConfigPath: cfg, Registry: reg})
			if err := s.Reload(context.Background()); err != nil {
				b.Fatal(err)
			}
			front := httptest.NewServer(s)
			defer front.Close()
			defer s.Close(context.Background())
			runClients(b, front.URL+"/x")
		})
	}
}

// BenchmarkStdlibProxy is the baseline of the core issue: the standard
// library's ReverseProxy with a tuned transport, same client and upstream.
// Compare cpu-ns/op and allocs/op with BenchmarkProxy/bare in one run.
func BenchmarkStdlibProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, DisableCompression: true}
	front := httptest.NewServer(rp)
	defer front.Close()
	runClients(b, front.URL+"/x")
}

func BenchmarkDirect(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	runClients(b, up.URL+"/x")
}

func runClients(b *testing.B, url string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	// Process CPU per request (client, proxy and upstream together) stays
	// comparable between benchmarks of one run on a shared machine.
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
