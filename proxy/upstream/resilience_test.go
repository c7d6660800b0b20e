package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func TestCircuitBreaker(t *testing.T) {
	b := newBackend(t, "a", nil)
	tests := []struct {
		name    string
		cb      config.CircuitBreaker
		minWait time.Duration // the refused call waited at least this long
		maxWait time.Duration
	}{
		{name: "fast fail without pending", cb: config.CircuitBreaker{MaxRequests: 1}, maxWait: time.Second},
		{name: "pending times out", cb: config.CircuitBreaker{MaxRequests: 1, MaxPending: 1, PendingTimeout: 80 * time.Millisecond}, minWait: 80 * time.Millisecond, maxWait: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := cluster("c", b.addr())
			cl.CircuitBreaker = &tt.cb
			s := newSet(t, Options{}, cl)
			c := s.Cluster("c")
			held, err := c.RoundTrip(newReq(t, "GET", "/"))
			if err != nil {
				t.Fatal(err)
			}
			if st := s.Status()[0]; st.Breaker != "open" || st.ActiveRequests != 1 {
				t.Fatalf("status breaker=%s active=%d, want open/1", st.Breaker, st.ActiveRequests)
			}
			start := time.Now()
			_, err = c.RoundTrip(newReq(t, "GET", "/"))
			waited := time.Since(start)
			if !IsOverloaded(err) || StatusFor(err) != http.StatusServiceUnavailable {
				t.Fatalf("err = %v, want ErrOverloaded/503", err)
			}
			if waited < tt.minWait || waited > tt.maxWait {
				t.Fatalf("refused after %v, want within [%v, %v]", waited, tt.minWait, tt.maxWait)
			}
			_, _ = io.Copy(io.Discard, held.Body)
			held.Body.Close()
			held.Body.Close() // a second Close must not free a second slot
			if r := do(c, newReq(t, "GET", "/")); r.err != nil || r.status != 200 {
				t.Fatalf("after release: %d %v", r.status, r.err)
			}
			if st := s.Status()[0]; st.Breaker != "closed" || st.ActiveRequests != 0 {
				t.Fatalf("status breaker=%s active=%d, want closed/0", st.Breaker, st.ActiveRequests)
			}
		})
	}
}

func TestCircuitBreakerPendingGetsSlot(t *testing.T) {
	b := newBackend(t, "a", nil)
	cl := cluster("c", b.addr())
	cl.CircuitBreaker = &config.CircuitBreaker{MaxRequests: 1, MaxPending: 1, PendingTimeout: 5 * time.Second}
	c := newSet(t, Options{}, cl).Cluster("c")
	held, err := c.RoundTrip(newReq(t, "GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- do(c, newReq(t, "GET", "/")) }()
	waitFor(t, "a pending request", 2*time.Second, func() bool { return c.breaker.waiting() == 1 })
	// The pending slot is taken: a third request fails fast.
	if _, err := c.RoundTrip(newReq(t, "GET", "/")); !IsOverloaded(err) {
		t.Fatalf("third request err = %v, want ErrOverloaded", err)
	}
	held.Body.Close()
	if r := <-done; r.err != nil || r.status != 200 {
		t.Fatalf("pending request got %d %v", r.status, r.err)
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(500)
		}
	})
	good := newBackend(t, "good", nil)
	cl := cluster("c", bad.addr(), good.addr())
	cl.Outlier = &config.Outlier{Consecutive5xx: 2, BaseEjection: 150 * time.Millisecond}
	s := newSet(t, Options{}, cl)
	c := s.Cluster("c")
	for range 4 { // round robin: bad answers twice
		do(c, newReq(t, "GET", "/"))
	}
	st, _ := endpointStatus(s, "c", bad.addr())
	if !st.Ejected || st.Healthy || st.Ejections != 1 {
		t.Fatalf("bad endpoint status %+v, want ejected", st)
	}
	before := bad.hits.Load()
	for range 10 {
		if r := do(c, newReq(t, "GET", "/")); r.backend != "good" {
			t.Fatalf("request reached %q while bad is ejected", r.backend)
		}
	}
	if bad.hits.Load() != before {
		t.Fatal("ejected endpoint got traffic")
	}
	// Max ejection percent (default 50) keeps the last endpoint in.
	c.eject(c.tab.Load().all[1], "test")
	if st, _ := endpointStatus(s, "c", good.addr()); st.Ejected {
		t.Fatal("second endpoint ejected beyond max_ejection_percent")
	}
	failing.Store(false)
	waitFor(t, "return from ejection", 3*time.Second, func() bool {
		st, _ := endpointStatus(s, "c", bad.addr())
		return st.Healthy && len(c.tab.Load().avail) == 2
	})
	got := map[string]int{}
	for range 10 {
		got[do(c, newReq(t, "GET", "/")).backend]++
	}
	if got["bad"] != 5 || got["good"] != 5 {
		t.Fatalf("after return: %v, want 5/5", got)
	}
}

func TestOutlierSecondEjectionLonger(t *testing.T) {
	bad := newBackend(t, "bad", nil)
	good := newBackend(t, "good", nil)
	cl := cluster("c", bad.addr(), good.addr())
	cl.Outlier = &config.Outlier{Consecutive5xx: 1, BaseEjection: 100 * time.Millisecond}
	s := newSet(t, Options{}, cl)
	c := s.Cluster("c")
	e := c.tab.Load().all[0]
	c.record(e, outcome5xx)
	first := time.Until(time.Unix(0, e.ejectedUntil.Load()))
	waitFor(t, "first return", 2*time.Second, func() bool { return len(c.tab.Load().avail) == 2 })
	c.record(e, outcome5xx)
	second := time.Until(time.Unix(0, e.ejectedUntil.Load()))
	if first > 100*time.Millisecond || second <= 100*time.Millisecond || second > 200*time.Millisecond {
		t.Fatalf("ejections lasted %v then %v, want base then 2×base", first, second)
	}
}

func TestConnectErrorsEject(t *testing.T) {
	good := newBackend(t, "good", nil)
	dead := closedAddr(t)
	cl := cluster("c", dead, good.addr())
	cl.Outlier = &config.Outlier{ConsecutiveConnectErrors: 2, BaseEjection: time.Minute}
	s := newSet(t, Options{}, cl)
	c := s.Cluster("c")
	for range 4 {
		do(c, newReq(t, "GET", "/"))
	}
	if st, _ := endpointStatus(s, "c", dead); !st.Ejected {
		t.Fatalf("dead endpoint not ejected: %+v", st)
	}
	for range 5 {
		if r := do(c, newReq(t, "GET", "/")); r.err != nil {
			t.Fatalf("call failed after ejection: %v", r.err)
		}
	}
}

func TestActiveHealthCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var checks atomic.Int64
	flaky := newBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if r.Header.Get("User-Agent") != healthUserAgent {
				w.WriteHeader(400)
				return
			}
			if !healthy.Load() {
				w.WriteHeader(503)
			}
		}
	})
	steady := newBackend(t, "steady", nil)
	cl := cluster("c", flaky.addr(), steady.addr())
	cl.HealthCheck = &config.HealthCheck{Interval: 20 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
	s := newSet(t, Options{}, cl)
	c := s.Cluster("c")
	waitFor(t, "first checks", 2*time.Second, func() bool { return checks.Load() >= 1 })
	if st, _ := endpointStatus(s, "c", flaky.addr()); !st.Healthy || st.HealthCheck != "passing" {
		t.Fatalf("flaky status %+v, want passing", st)
	}
	healthy.Store(false)
	waitFor(t, "marked down", 3*time.Second, func() bool {
		st, _ := endpointStatus(s, "c", flaky.addr())
		return st.HealthCheck == "failing" && !st.Healthy
	})
	for range 6 {
		if r := do(c, newReq(t, "GET", "/x")); r.backend != "steady" {
			t.Fatalf("request went to %q while flaky is down", r.backend)
		}
	}
	healthy.Store(true)
	waitFor(t, "marked up", 3*time.Second, func() bool {
		st, _ := endpointStatus(s, "c", flaky.addr())
		return st.Healthy
	})
	got := map[string]int{}
	for range 6 {
		got[do(c, newReq(t, "GET", "/x")).backend]++
	}
	if got["flaky"] != 3 {
		t.Fatalf("after recovery %v, want 3/3", got)
	}
}

func TestAllDownIsNoHealthyEndpoint(t *testing.T) {
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	cl := cluster("c", b.addr())
	cl.HealthCheck = &config.HealthCheck{Interval: 10 * time.Millisecond, UnhealthyThreshold: 1}
	s := newSet(t, Options{}, cl)
	waitFor(t, "marked down", 2*time.Second, func() bool { return len(s.Cluster("c").tab.Load().avail) == 0 })
	_, err := s.Cluster("c").RoundTrip(newReq(t, "GET", "/"))
	if !errIs(err, ErrNoHealthyEndpoint) || StatusFor(err) != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want ErrNoHealthyEndpoint/503", err)
	}
}

func TestTimeouts(t *testing.T) {
	var calls atomic.Int64
	// The first call hangs until the client gives up; later calls answer.
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "late ok")
	})
	hang := newBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tests := []struct {
		name     string
		addr     string
		opts     CallOptions
		wantErr  error
		wantBody string
	}{
		{name: "per-try timeout then retry succeeds", addr: b.addr(),
			opts:     CallOptions{Retry: &config.Retry{Attempts: 2, On: []string{"gateway-error"}, PerTryTimeout: 100 * time.Millisecond, Backoff: time.Millisecond}},
			wantBody: "late ok"},
		{name: "per-try timeout without retry is 504", addr: hang.addr(),
			opts:    CallOptions{Retry: &config.Retry{Attempts: 1, PerTryTimeout: 50 * time.Millisecond}},
			wantErr: ErrTimeout},
		{name: "overall timeout is 504", addr: hang.addr(), opts: CallOptions{Timeout: 50 * time.Millisecond}, wantErr: ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSet(t, Options{}, cluster("c", tt.addr)).Cluster("c")
			ctx := WithCallOptions(context.Background(), tt.opts)
			start := time.Now()
			r := do(c, newReq(t, "GET", "/").WithContext(ctx))
			if time.Since(start) > 3*time.Second {
				t.Fatalf("call took %v", time.Since(start))
			}
			if tt.wantErr != nil {
				if !errIs(r.err, tt.wantErr) || StatusFor(r.err) != http.StatusGatewayTimeout {
					t.Fatalf("err = %v, want %v/504", r.err, tt.wantErr)
				}
				return
			}
			if r.err != nil || r.body != tt.wantBody {
				t.Fatalf("got %q %v, want %q", r.body, r.err, tt.wantBody)
			}
		})
	}
}

func TestTimeoutsStopAtResponseHeaders(t *testing.T) {
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(150 * time.Millisecond)
		_, _ = io.WriteString(w, "tail")
	})
	c := newSet(t, Options{}, cluster("c", b.addr())).Cluster("c")
	ctx := WithCallOptions(context.Background(), CallOptions{Timeout: 50 * time.Millisecond,
		Retry: &config.Retry{Attempts: 1, PerTryTimeout: 50 * time.Millisecond}})
	r := do(c, newReq(t, "GET", "/").WithContext(ctx))
	if r.err != nil || r.body != "tail" {
		t.Fatalf("got %q %v: the timeouts must stop at response headers", r.body, r.err)
	}
}

func TestClientCancelIsNotRetried(t *testing.T) {
	started := make(chan struct{}, 4)
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	})
	cl := cluster("c", b.addr())
	cl.Retry = &config.Retry{Attempts: 3, On: []string{"5xx"}, Backoff: time.Millisecond}
	c := newSet(t, Options{}, cl).Cluster("c")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	r := do(c, newReq(t, "GET", "/").WithContext(ctx))
	if !errIs(r.err, context.Canceled) || StatusFor(r.err) != StatusClientClosed {
		t.Fatalf("err = %v, want context.Canceled/499", r.err)
	}
	if b.hits.Load() != 1 {
		t.Fatalf("%d tries, want 1", b.hits.Load())
	}
}

// clientFault is a request body failure caused by the client (as
// listener.BodyError is): it says so through ClientFault.
type clientFault struct{}

func (clientFault) Error() string     { return "client body cut short" }
func (clientFault) ClientFault() bool { return true }

// TestClientBodyFaultsDoNotEject: requests whose body fails on the
// client's side are neither retried nor held against the endpoint by
// outlier detection, on the direct path (small body) and on
// http.Transport (body of unknown length) alike.
func TestClientBodyFaultsDoNotEject(t *testing.T) {
	for _, tt := range []struct {
		name string
		cl   int64
	}{{"direct path", 10}, {"transport", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, "b", nil)
			other := newBackend(t, "other", nil) // so that one may be ejected
			cl := cluster("c", b.addr(), other.addr())
			cl.Outlier = &config.Outlier{Consecutive5xx: 2, BaseEjection: time.Minute}
			cl.Retry = &config.Retry{Attempts: 3, On: []string{"5xx", "reset"}, NonIdempotent: true}
			s := newSet(t, Options{}, cl)
			c := s.Cluster("c")
			for i := range 4 {
				req := newReq(t, "POST", "/")
				req.Body = io.NopCloser(io.MultiReader(strings.NewReader("ab"), iotestErr{clientFault{}}))
				req.ContentLength = tt.cl
				r := do(c, req)
				var cf interface{ ClientFault() bool }
				if !errors.As(r.err, &cf) {
					t.Fatalf("request %d: err = %v, want the client's fault", i, r.err)
				}
			}
			for _, addr := range []string{b.addr(), other.addr()} {
				if st, _ := endpointStatus(s, "c", addr); st.Ejected || !st.Healthy {
					t.Fatalf("endpoint %+v after client faults, want healthy and not ejected", st)
				}
			}
			if got := counterValue(t, c.m.retries); got != 0 {
				t.Errorf("retries = %v, want 0", got)
			}
		})
	}
}
