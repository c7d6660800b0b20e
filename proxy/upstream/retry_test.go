package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// failFirst answers status to the first n requests, then 200.
func failFirst(n int64, status int) http.HandlerFunc {
	var seen atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			w.WriteHeader(status)
			return
		}
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte("ok:"), body...))
	}
}

func TestRetries(t *testing.T) {
	fastRetry := func(on ...string) *config.Retry {
		return &config.Retry{Attempts: 3, On: on, Backoff: time.Millisecond}
	}
	tests := []struct {
		name       string
		retry      *config.Retry
		method     string
		body       string
		replayable bool
		handler    http.HandlerFunc
		wantStatus int
		wantHits   int64
		wantBody   string
	}{
		{name: "GET retried on 503", retry: fastRetry("503"), method: "GET", handler: failFirst(2, 503), wantStatus: 200, wantHits: 3, wantBody: "ok:"},
		{name: "GET gives up after attempts", retry: fastRetry("503"), method: "GET", handler: failFirst(5, 503), wantStatus: 503, wantHits: 3},
		{name: "GET not retried on unlisted code", retry: fastRetry("503"), method: "GET", handler: failFirst(1, 500), wantStatus: 500, wantHits: 1},
		{name: "5xx trigger matches 500", retry: fastRetry("5xx"), method: "GET", handler: failFirst(1, 500), wantStatus: 200, wantHits: 2},
		{name: "default triggers cover 502", retry: &config.Retry{Backoff: time.Millisecond}, method: "GET", handler: failFirst(1, 502), wantStatus: 200, wantHits: 2},
		{name: "no policy no retry", method: "GET", handler: failFirst(1, 503), wantStatus: 503, wantHits: 1},
		{name: "POST not retried", retry: fastRetry("503"), method: "POST", handler: failFirst(1, 503), wantStatus: 503, wantHits: 1},
		{name: "POST replayable but not allowed", retry: fastRetry("503"), method: "POST", body: "data", replayable: true, handler: failFirst(1, 503), wantStatus: 503, wantHits: 1},
		{name: "POST non_idempotent replays body", retry: &config.Retry{Attempts: 2, On: []string{"503"}, NonIdempotent: true, Backoff: time.Millisecond},
			method: "POST", body: "data", replayable: true, handler: failFirst(1, 503), wantStatus: 200, wantHits: 2, wantBody: "ok:data"},
		{name: "PUT with streaming body not retried", retry: fastRetry("503"), method: "PUT", body: "data", handler: failFirst(1, 503), wantStatus: 503, wantHits: 1},
		{name: "POST with idempotency key retried", retry: fastRetry("503"), method: "POST", handler: failFirst(1, 503), wantStatus: 200, wantHits: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, "a", tt.handler)
			cl := cluster("c", b.addr())
			cl.Retry = tt.retry
			c := newSet(t, Options{}, cl).Cluster("c")
			req := newReq(t, tt.method, "/")
			if tt.body != "" {
				if tt.replayable {
					req, _ = http.NewRequest(tt.method, "http://upstream/", strings.NewReader(tt.body))
				} else {
					req, _ = http.NewRequest(tt.method, "http://upstream/", io.NopCloser(strings.NewReader(tt.body)))
				}
			}
			if strings.Contains(tt.name, "idempotency key") {
				req.Header.Set("Idempotency-Key", "k1")
			}
			r := do(c, req)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.status != tt.wantStatus || b.hits.Load() != tt.wantHits {
				t.Fatalf("status %d after %d hits, want %d after %d", r.status, b.hits.Load(), tt.wantStatus, tt.wantHits)
			}
			if tt.wantBody != "" && r.body != tt.wantBody {
				t.Fatalf("body %q, want %q", r.body, tt.wantBody)
			}
			if c.active.Load() != 0 || c.retrying.Load() != 0 {
				t.Fatalf("active=%d retrying=%d after the call", c.active.Load(), c.retrying.Load())
			}
		})
	}
}

func TestRetryOnConnectFailure(t *testing.T) {
	good := newBackend(t, "good", nil)
	dead := closedAddr(t)
	tests := []struct {
		name    string
		retry   *config.Retry
		method  string
		wantErr bool // some calls fail when not retried
	}{
		{name: "GET retried to the other endpoint", retry: &config.Retry{Attempts: 2, On: []string{"connect-failure"}, Backoff: time.Millisecond}, method: "GET"},
		{name: "POST without body retried (never sent)", retry: &config.Retry{Attempts: 2, On: []string{"connect-failure"}, Backoff: time.Millisecond}, method: "POST"},
		{name: "no retry surfaces ErrConnect", method: "GET", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := cluster("c", dead, good.addr())
			cl.Retry = tt.retry
			c := newSet(t, Options{}, cl).Cluster("c")
			failures := 0
			for range 10 {
				r := do(c, newReq(t, tt.method, "/"))
				if r.err != nil {
					failures++
					if !errIs(r.err, ErrConnect) || StatusFor(r.err) != http.StatusBadGateway {
						t.Fatalf("err = %v (status %d), want ErrConnect/502", r.err, StatusFor(r.err))
					}
					continue
				}
				if r.status != 200 || r.backend != "good" {
					t.Fatalf("got %d from %q", r.status, r.backend)
				}
			}
			if tt.wantErr != (failures > 0) {
				t.Fatalf("%d of 10 calls failed, wantErr=%v", failures, tt.wantErr)
			}
		})
	}
}

func TestRetryBudgetCaps(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	var retriesArrived atomic.Int64
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Id")
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		retriesArrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cl := cluster("c", b.addr())
	cl.Retry = &config.Retry{Attempts: 2, On: []string{"503"}, Backoff: time.Millisecond}
	cl.RetryBudget = &config.RetryBudget{Percent: 1, MinRetryConcurrency: 1}
	m, _ := NewMetrics(nil)
	c := newSet(t, Options{Metrics: m}, cl).Cluster("c")

	const n = 5
	results := make(chan result, n)
	for i := range n {
		go func() {
			req := newReq(t, "GET", "/")
			req.Header.Set("X-Id", string(rune('a'+i)))
			results <- do(c, req)
		}()
	}
	// All but one retry are refused by the budget and return the 503.
	for range n - 1 {
		select {
		case r := <-results:
			if r.err != nil || r.status != 503 {
				t.Fatalf("got %d %v, want the 503 of a refused retry", r.status, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("calls did not return")
		}
	}
	close(release)
	if r := <-results; r.err != nil || r.status != 200 {
		t.Fatalf("retried call got %d %v", r.status, r.err)
	}
	if got := retriesArrived.Load(); got != 1 {
		t.Fatalf("%d retries reached the backend, want 1", got)
	}
	if got := counterValue(t, m.budget.WithLabelValues("c")); got != n-1 {
		t.Fatalf("budget exhausted counter = %v, want %d", got, n-1)
	}
}

func TestBackoffRespectsOverallTimeout(t *testing.T) {
	b := newBackend(t, "a", failFirst(100, 503))
	cl := cluster("c", b.addr())
	cl.Retry = &config.Retry{Attempts: 5, On: []string{"503"}, Backoff: time.Second}
	c := newSet(t, Options{}, cl).Cluster("c")
	ctx := WithCallOptions(context.Background(), CallOptions{Timeout: 100 * time.Millisecond})
	start := time.Now()
	r := do(c, newReq(t, "GET", "/").WithContext(ctx))
	if !errIs(r.err, ErrTimeout) || StatusFor(r.err) != http.StatusGatewayTimeout {
		t.Fatalf("err = %v, want ErrTimeout", r.err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v, the overall timeout did not cut the backoff", el)
	}
}

func TestRouteRetryOverridesCluster(t *testing.T) {
	b := newBackend(t, "a", failFirst(1, 503))
	cl := cluster("c", b.addr()) // no cluster retry policy
	c := newSet(t, Options{}, cl).Cluster("c")
	var trace CallTrace
	ctx := WithCallOptions(context.Background(), CallOptions{Retry: &config.Retry{Attempts: 2, On: []string{"503"}, Backoff: time.Millisecond}, Trace: &trace})
	r := do(c, newReq(t, "GET", "/").WithContext(ctx))
	if r.err != nil || r.status != 200 || b.hits.Load() != 2 {
		t.Fatalf("got %d %v after %d hits, want 200 after 2", r.status, r.err, b.hits.Load())
	}
	if trace.Endpoint != b.addr() || trace.Tries != 2 {
		t.Fatalf("trace %+v, want endpoint %s after 2 tries", trace, b.addr())
	}
}

func TestRequestBodyStreams(t *testing.T) {
	// A body larger than any buffer reaches the upstream intact.
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // HTTP/1 servers are half duplex
		_, _ = w.Write(body)
	})
	c := newSet(t, Options{}, cluster("c", b.addr())).Cluster("c")
	payload := bytes.Repeat([]byte("0123456789"), 1<<17)
	req, _ := http.NewRequest("POST", "http://upstream/", io.NopCloser(bytes.NewReader(payload)))
	r := do(c, req)
	if r.err != nil || r.body != string(payload) {
		t.Fatalf("echo mismatch: %v, %d bytes", r.err, len(r.body))
	}
}
