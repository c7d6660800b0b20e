package mesh_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/mesh"
)

// BenchmarkSidecarPair compares, in one run and against the same trivial
// app: the app called directly, through one bare wasmgate hop (edge mode,
// plaintext), and through a sidecar pair (orders' outbound -> mTLS h2 ->
// payments' inbound -> app). It reports p50 and p99 latency per request and,
// for the pair, the TLS connections payments' inbound accepted over all
// rounds (handshakes), which must stay near the number of connections
// between the sidecars, not the number of requests.
//
//	go test -run XXX -bench SidecarPair -benchtime 5s ./proxy/mesh
func BenchmarkSidecarPair(b *testing.B) {
	dir := b.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := mesh.InitCA(caDir, td); err != nil {
		b.Fatal(err)
	}
	for _, s := range []string{"orders", "payments"} {
		if _, _, err := mesh.Issue(mesh.IssueOptions{CADir: caDir, OutDir: filepath.Join(dir, s), Service: s}); err != nil {
			b.Fatal(err)
		}
	}
	app := serveApp(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
	inbound, outbound, edge := freePort(b), freePort(b), freePort(b)
	common := "admin: {address: \"off\"}\nlogging: {access_log: {enabled: false}, level: error}\n"
	writeFile(b, filepath.Join(dir, "edge.yaml"), fmt.Sprintf(`mode: edge
%slisteners: [{name: http, address: %q}]
routes: [{cluster: app}]
clusters: [{name: app, endpoints: [%q]}]
`, common, edge, app))
	sidecar := func(svc, side string) string {
		return fmt.Sprintf(`mode: sidecar
%smesh:
  trust_domain: %s
  service: %s
  cert_file: %s/cert.pem
  key_file: %s/key.pem
  bundle_file: %s/bundle.pem
%s  services: [{name: payments, endpoints: [%q]}]
`, common, td, svc, svc, svc, svc, side, inbound)
	}
	writeFile(b, filepath.Join(dir, "payments.yaml"), sidecar("payments", fmt.Sprintf("  inbound: {address: %q, app: %q}\n", inbound, app)))
	writeFile(b, filepath.Join(dir, "orders.yaml"), sidecar("orders", fmt.Sprintf("  outbound: {address: %q}\n", outbound)))
	startGateway(b, filepath.Join(dir, "edge.yaml"))
	payments := startGateway(b, filepath.Join(dir, "payments.yaml"))
	startGateway(b, filepath.Join(dir, "orders.yaml"))

	run := func(b *testing.B, url, host string) {
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		var mu sync.Mutex
		var all []time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var lat []time.Duration
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Host = host
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat = append(lat, time.Since(start))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		b.StopTimer()
		if len(all) == 0 {
			return
		}
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("direct", func(b *testing.B) { run(b, "http://"+app+"/", "") })
	b.Run("edge-hop", func(b *testing.B) { run(b, "http://"+edge+"/", "") })
	b.Run("sidecar-pair", func(b *testing.B) {
		run(b, "http://"+outbound+"/", "payments")
		// Over every round of this sub-benchmark: TLS connections accepted
		// by payments' inbound, one handshake each.
		b.ReportMetric(connections(b, payments, mesh.InboundListener), "handshakes-total")
	})
}
