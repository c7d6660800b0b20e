package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy"
)

// TestE2EClientBodyFaults: through the real gateway (listener, router,
// upstream), a request whose first chunk is malformed is answered 400 and
// one whose small body the client cuts short by leaving is answered 499;
// in neither case does the upstream's handler run, and however many such
// requests come, outlier detection does not eject the healthy endpoint
// (ejection of the only endpoint is allowed here, so a wrong verdict would
// turn the last GET into a 503).
func TestE2EClientBodyFaults(t *testing.T) {
	var ran atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
mode: edge
admin: {address: "off"}
logging: {level: error, access_log: {enabled: false}}
listeners: [{name: plain, address: "127.0.0.1:0"}]
routes: [{name: all, match: {path: {prefix: /}}, cluster: up}]
clusters:
  - name: up
    endpoints: [%q]
    outlier: {consecutive_5xx: 2, max_ejection_percent: 100, base_ejection: 1m}
`, up.Listener.Addr())
	gw := bootGateway(t, dir, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	addr := gw.Listeners()[0].Addr().String()

	tests := []struct{ name, raw, status string }{
		{"bad first chunk", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size overflow", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", "400"},
		{"missing chunk CRLF", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "400"},
		// The client sends 3 of 10 bytes and leaves: net/http cancels the
		// request (499); the direct path reads a small body before sending,
		// so the upstream sees nothing.
		{"small body cut short", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", "499"},
	}
	for round := range 2 {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%d", tt.name, round), func(t *testing.T) {
				if got := halfClosedExchange(t, addr, tt.raw); !strings.HasPrefix(got, "HTTP/1.1 "+tt.status) {
					t.Fatalf("status line %q, want %s", got, tt.status)
				}
			})
		}
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("upstream handler ran %d times for malformed requests", n)
	}
	resp, err := http.Get("http://" + addr + "/fine")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || ran.Load() != 1 {
		t.Fatalf("a good request after the faults: %d, upstream ran %d times; the endpoint was blamed", resp.StatusCode, ran.Load())
	}
}

// halfClosedExchange writes raw, closes the sending side (the client has
// nothing more to say) and returns the status line of the answer.
func halfClosedExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// bootGateway writes src as dir/wasmgate.yaml and starts a Gateway on it,
// logs discarded. Shutting it down is the caller's (tests differ in how).
func bootGateway(t *testing.T, dir, src string) *proxy.Gateway {
	t.Helper()
	path := filepath.Join(dir, "wasmgate.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gw, err := proxy.NewGateway(ctx, proxy.GatewayOptions{ConfigPath: path, LogOutput: io.Discard, AccessOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return gw
}
