//go:build !race

// quic-go's client has a known data race when it sends 0-RTT
// (quic-go/quic-go#4303), so this test does not run under -race.

package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// TestZeroRTT resumes a session and sends a GET in 0-RTT through quic-go.
func TestZeroRTT(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			cfg := h3Config()
			cfg.Allow0RTT = allow
			var mu sync.Mutex
			var early []string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				early = append(early, r.Header.Get("Early-Data"))
				mu.Unlock()
			})
			s := startTLS(t, config.Listener{HTTP3: cfg}, h, Options{})
			conf := s.clientTLS()
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			first := &http3.Transport{TLSClientConfig: conf}
			resp, err := (&http.Client{Transport: first}).Get(s.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			first.Close()
			var conn *quic.Conn
			second := &http3.Transport{TLSClientConfig: conf, Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				c, err := quic.DialAddrEarly(ctx, addr, tc, qc)
				conn = c
				return c, err
			}}
			defer second.Close()
			req, _ := http.NewRequest(http3.MethodGet0RTT, s.url("/"), nil)
			resp, err = second.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("0-RTT GET: status %d", resp.StatusCode)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(early) != 2 || early[0] != "" {
				t.Fatalf("Early-Data marks %q", early)
			}
			if used := conn.ConnectionState().Used0RTT; used != allow {
				t.Fatalf("0-RTT used: %v, want %v", used, allow)
			}
			// Whether the request is still early when the handler runs
			// depends on timing (the client's Finished may arrive first);
			// TestEarlyData covers the policy. Without 0-RTT it never is.
			if !allow && early[1] != "" {
				t.Fatalf("Early-Data %q with 0-RTT off", early[1])
			}
		})
	}
}
