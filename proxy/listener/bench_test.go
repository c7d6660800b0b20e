package listener

import (
	"io"
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// BenchmarkH2vsH3 measures small GETs through one TLS listener over HTTP/1.1
// (a connection per client goroutine), HTTP/2 (one connection) and HTTP/3
// (one QUIC connection), same handler, same process, 16 requests in flight
// on 2 cores. Client and server share the CPU, so ns/op is the cost of both.
func BenchmarkH2vsH3(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	s := startTLS(b, config.Listener{HTTP3: h3Config()}, h, Options{Logger: zap.NewNop()})
	clients := []struct {
		name string
		c    *http.Client
	}{
		{"h1", h2Client(b, s.clientTLS(), false)},
		{"h2", h2Client(b, s.clientTLS(), true)},
		{"h3", h3Client(b, s.clientTLS())},
	}
	url := s.url("/")
	for _, tc := range clients {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			// Several requests in flight per core, as behind a real edge.
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := tc.c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
