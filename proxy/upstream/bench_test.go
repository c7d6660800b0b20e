package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func benchBackend(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(srv.Close)
	return srv
}

func runBench(b *testing.B, rt http.RoundTripper, url string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", url, nil)
		for pb.Next() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkRoundTrip measures a cluster round trip to a loopback backend
// against a bare, equally tuned http.Transport (the "baseline").
func BenchmarkRoundTrip(b *testing.B) {
	srv := benchBackend(b)
	addr := srv.Listener.Addr().String()
	b.Run("baseline", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
		defer tr.CloseIdleConnections()
		runBench(b, tr, srv.URL+"/")
	})
	retry := &config.Retry{Attempts: 2, PerTryTimeout: time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*config.Cluster)
	}{
		{"round_robin", func(*config.Cluster) {}},
		{"p2c", func(c *config.Cluster) { c.Balancer = P2C }},
		{"breaker+outlier+retry", func(c *config.Cluster) {
			c.CircuitBreaker = &config.CircuitBreaker{MaxRequests: 1024}
			c.Outlier = &config.Outlier{}
			c.Retry = retry
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cl := cluster("c", addr)
			tc.mod(&cl)
			cfg := config.Config{Clusters: []config.Cluster{cl}}
			cfg.ApplyDefaults()
			m, _ := NewMetrics(prometheus.NewRegistry())
			s, err := NewSet(b.Context(), cfg.Clusters, Options{Metrics: m})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(b.Context())
			runBench(b, s.Cluster("c"), "http://upstream/")
		})
	}
}
