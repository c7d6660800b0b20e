package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func TestDNSNameEndpoint(t *testing.T) {
	b := newBackend(t, "a", nil)
	_, port, _ := net.SplitHostPort(b.addr())
	s := newSet(t, Options{}, cluster("c", "localhost:"+port))
	for range 3 {
		if r := do(s.Cluster("c"), newReq(t, "GET", "/")); r.err != nil || r.status != 200 {
			t.Fatalf("got %d %v", r.status, r.err)
		}
	}
	eps := s.Status()[0].Endpoints
	if len(eps) != 1 || eps[0].Hostname != "localhost" || eps[0].Address != "127.0.0.1:"+port {
		t.Fatalf("endpoints %+v, want localhost resolved to 127.0.0.1 only", eps)
	}
}

// fakeResolver answers from a mutable table, or fails when fail is set.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	fail  bool
}

func (f *fakeResolver) set(host string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[host] = ips
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("dns down")
	}
	var out []net.IPAddr
	for _, ip := range f.addrs[host] {
		out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
	}
	return out, nil
}

func TestDNSRefresh(t *testing.T) {
	res := &fakeResolver{addrs: map[string][]string{}}
	res.set("svc.internal", "10.0.0.2", "10.0.0.1", "fd00::1")
	cl := cluster("c", "svc.internal:8080", "10.9.9.9:80")
	cl.DNSRefresh = 10 * time.Millisecond
	s := newSet(t, Options{Resolver: res}, cl)
	addrsNow := func() []string {
		var out []string
		for _, e := range s.Status()[0].Endpoints {
			out = append(out, e.Address)
		}
		return out
	}
	if got := addrsNow(); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.9.9.9:80"}) {
		t.Fatalf("initial endpoints %v (IPv6 must be dropped when IPv4 exists)", got)
	}
	res.set("svc.internal", "10.0.0.3")
	waitFor(t, "re-resolution", 2*time.Second, func() bool {
		return slices.Equal(addrsNow(), []string{"10.0.0.3:8080", "10.9.9.9:80"})
	})
	res.mu.Lock()
	res.fail = true
	res.mu.Unlock()
	time.Sleep(50 * time.Millisecond) // several failed refreshes
	if got := addrsNow(); !slices.Equal(got, []string{"10.0.0.3:8080", "10.9.9.9:80"}) {
		t.Fatalf("a failed lookup dropped endpoints: %v", got)
	}
}

// shadowRecorder is a shadow backend that reports what it received.
type shadowSeen struct {
	method, path, host, header, body string
}

func TestMirrorSendsCopy(t *testing.T) {
	seen := make(chan shadowSeen, 4)
	shadow := newBackend(t, "shadow", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- shadowSeen{r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Test"), string(b)}
	})
	main := newBackend(t, "main", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	m, _ := NewMetrics(nil)
	s := newSet(t, Options{Metrics: m}, cluster("main", main.addr()), cluster("shadow", shadow.addr()))
	tests := []struct {
		name     string
		method   string
		body     string
		stream   bool
		want     *shadowSeen
		skipped  float64
		mainBody string
	}{
		{name: "GET", method: "GET", want: &shadowSeen{"GET", "/p?q=1", "api.example.com-shadow:8443", "yes", ""}},
		{name: "replayable body", method: "POST", body: "hello", mainBody: "hello", want: &shadowSeen{"POST", "/p?q=1", "api.example.com-shadow:8443", "yes", "hello"}},
		{name: "streaming body skipped", method: "POST", body: "hello", stream: true, mainBody: "hello", skipped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.stream {
					body = io.NopCloser(body)
				}
			}
			req, _ := http.NewRequest(tt.method, "http://api.example.com:8443/p?q=1", body)
			req.Header.Set("X-Test", "yes")
			req.Header.Set("Connection", "close")
			s.Mirror(req, config.Mirror{Cluster: "shadow"})
			r := do(s.Cluster("main"), req)
			if r.err != nil || r.body != tt.mainBody {
				t.Fatalf("main got %q %v, want %q", r.body, r.err, tt.mainBody)
			}
			if tt.want != nil {
				select {
				case got := <-seen:
					if got != *tt.want {
						t.Fatalf("shadow saw %+v, want %+v", got, *tt.want)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("shadow got nothing")
				}
			}
			if got := counterValue(t, m.mirror.WithLabelValues("shadow", "skipped_body")); got != tt.skipped {
				t.Fatalf("skipped_body = %v, want %v", got, tt.skipped)
			}
		})
	}
}

func TestSlowMirrorDoesNotSlowMain(t *testing.T) {
	release := make(chan struct{})
	shadow := newBackend(t, "shadow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	main := newBackend(t, "main", nil)
	m, _ := NewMetrics(nil)
	s := newSet(t, Options{Metrics: m, MirrorMaxInFlight: 2}, cluster("main", main.addr()), cluster("shadow", shadow.addr()))
	start := time.Now()
	for range 20 {
		req := newReq(t, "GET", "/")
		s.Mirror(req, config.Mirror{Cluster: "shadow", Percent: 100})
		if r := do(s.Cluster("main"), req); r.err != nil || r.status != 200 {
			t.Fatalf("main got %d %v", r.status, r.err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("20 main requests took %v behind a stuck mirror", el)
	}
	waitFor(t, "mirrors in flight", 2*time.Second, func() bool { return shadow.hits.Load() == 2 })
	if got := counterValue(t, m.mirror.WithLabelValues("shadow", "dropped_full")); got != 18 {
		t.Fatalf("dropped_full = %v, want 18", got)
	}
	close(release)
	waitFor(t, "mirrors done", 2*time.Second, func() bool {
		return counterValue(t, m.mirror.WithLabelValues("shadow", "sent")) == 2
	})
}

func TestMirrorPercent(t *testing.T) {
	shadow := newBackend(t, "shadow", nil)
	m, _ := NewMetrics(nil)
	s := newSet(t, Options{Metrics: m}, cluster("shadow", shadow.addr()))
	for range 400 {
		s.Mirror(newReq(t, "GET", "/"), config.Mirror{Cluster: "shadow", Percent: 25})
	}
	waitFor(t, "mirrors done", 5*time.Second, func() bool {
		return s.Cluster("shadow").active.Load() == 0 && len(s.Cluster("shadow").mirrorSlots) == 0
	})
	sent := counterValue(t, m.mirror.WithLabelValues("shadow", "sent")) + counterValue(t, m.mirror.WithLabelValues("shadow", "dropped_full"))
	if sent < 50 || sent > 150 {
		t.Fatalf("mirrored %v of 400 at 25%%", sent)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := newBackend(t, "a", nil)
	defer b.Close()
	_, port, _ := net.SplitHostPort(b.addr())
	cl := cluster("c", "localhost:"+port, b.addr())
	cl.HealthCheck = &config.HealthCheck{Path: "/healthz", Interval: 5 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	cl.DNSRefresh = 5 * time.Millisecond
	cl.Outlier = &config.Outlier{Consecutive5xx: 1, ConsecutiveConnectErrors: 1, BaseEjection: time.Hour, MaxEjectionPercent: 50}
	cfg := config.Config{Clusters: []config.Cluster{cl, cluster("shadow", b.addr())}}
	cfg.ApplyDefaults()
	s, err := NewSet(context.Background(), cfg.Clusters, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Cluster("c")
	for range 10 {
		req := newReq(t, "GET", "/")
		s.Mirror(req, config.Mirror{Cluster: "shadow"})
		if r := do(c, req); r.err != nil {
			t.Fatal(r.err)
		}
	}
	c.eject(c.tab.Load().all[0], "test") // leaves an ejection timer pending
	time.Sleep(20 * time.Millisecond)    // let health checks and refreshes run
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b.Close()
}

func TestMetricsAcrossReloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering the metrics twice succeeded")
	}
	b := newBackend(t, "a", nil)
	old := newSet(t, Options{Metrics: m}, cluster("c", b.addr()))
	cur := newSet(t, Options{Metrics: m}, cluster("c", b.addr()), cluster("d", b.addr()))
	do(old.Cluster("c"), newReq(t, "GET", "/"))
	do(cur.Cluster("c"), newReq(t, "GET", "/"))
	count := func() map[string]int {
		mfs, err := reg.Gather() // fails on duplicate series
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, mf := range mfs {
			out[mf.GetName()] = len(mf.GetMetric())
		}
		return out
	}
	got := count()
	if got["wasmgate_upstream_endpoint_healthy"] != 2 || got["wasmgate_upstream_active_requests"] != 2 {
		t.Fatalf("series %v, want one per cluster and endpoint", got)
	}
	if v := counterValue(t, m.requests.WithLabelValues("c", "2xx")); v != 2 {
		t.Fatalf("requests{c,2xx} = %v, want 2 (counted across sets)", v)
	}
	if err := cur.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := count(); got["wasmgate_upstream_endpoint_healthy"] != 1 {
		t.Fatalf("after closing the new set: %v", got)
	}
	// Mirroring through a closed set is dropped quietly.
	cur.Mirror(newReq(t, "GET", "/"), config.Mirror{Cluster: "c"})
}
