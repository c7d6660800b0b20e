package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	cert := ca.issue(t, "x", []string{"localhost"}, false, "").write(t, dir, "x")
	tests := []struct {
		name string
		cfg  config.Listener
		want string
	}{
		{"http3 without tls", config.Listener{Name: "a", Address: "127.0.0.1:0", HTTP3: h3Config()}, "http3 needs tls"},
		{"missing cert file", config.Listener{Name: "a", Address: "127.0.0.1:0", TLS: &config.ListenerTLS{
			Certs: []config.Cert{{CertFile: dir + "/nope.crt", KeyFile: dir + "/nope.key"}}}}, "no such file"},
		{"require without CA", config.Listener{Name: "a", Address: "127.0.0.1:0", TLS: &config.ListenerTLS{
			Certs: []config.Cert{cert}, ClientAuth: "require"}}, "needs client_ca_file"},
		{"bad min version", config.Listener{Name: "a", Address: "127.0.0.1:0", TLS: &config.ListenerTLS{
			Certs: []config.Cert{cert}, MinVersion: "1.0"}}, "min_version"},
		{"no certs at all", config.Listener{Name: "a", Address: "127.0.0.1:0", TLS: &config.ListenerTLS{}}, "needs certs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, testLimits(), okHandler, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestStartReturnsBindError(t *testing.T) {
	first := start(t, config.Listener{}, testLimits(), okHandler, Options{})
	l, err := New(config.Listener{Name: "second", Address: first.Addr().String()}, testLimits(), okHandler, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = l.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bind tcp") {
		t.Fatalf("Start on a taken port: got %v, want bind error", err)
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a listener that never started: %v", err)
	}
}

func TestConnInfo(t *testing.T) {
	type seen struct {
		info  ConnInfo
		ok    bool
		proto string
		tls   bool
	}
	var mu sync.Mutex
	var got seen
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := Info(r.Context())
		mu.Lock()
		got = seen{info: info, ok: ok, proto: r.Proto, tls: r.TLS != nil}
		mu.Unlock()
	})
	plain := start(t, config.Listener{Name: "plain", Role: "outbound"}, testLimits(), h, Options{})
	secure := startTLS(t, config.Listener{Name: "edge", HTTP3: h3Config()}, h, Options{})

	tests := []struct {
		name   string
		client *http.Client
		url    string
		want   seen
	}{
		{"plaintext h1", http.DefaultClient, "http://" + plain.Addr().String() + "/",
			seen{info: ConnInfo{Listener: "plain", Role: "outbound"}, ok: true, proto: "HTTP/1.1"}},
		{"tls h1", h2Client(t, secure.clientTLS(), false), secure.url("/"),
			seen{info: ConnInfo{Listener: "edge", Role: "public", TLS: true}, ok: true, proto: "HTTP/1.1", tls: true}},
		{"tls h2", h2Client(t, secure.clientTLS(), true), secure.url("/"),
			seen{info: ConnInfo{Listener: "edge", Role: "public", TLS: true}, ok: true, proto: "HTTP/2.0", tls: true}},
		{"h3", h3Client(t, secure.clientTLS()), secure.url("/"),
			seen{info: ConnInfo{Listener: "edge", Role: "public", TLS: true, QUIC: true}, ok: true, proto: "HTTP/3.0", tls: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			g := got
			mu.Unlock()
			if g.info.LocalAddr == nil || g.info.RemoteAddr == nil {
				t.Fatalf("addresses missing: %+v", g.info)
			}
			g.info.LocalAddr, g.info.RemoteAddr = nil, nil
			if g != tt.want {
				t.Fatalf("got %+v, want %+v", g, tt.want)
			}
		})
	}
	if _, ok := Info(context.Background()); ok {
		t.Fatal("Info of a foreign context reports ok")
	}
}

// TestShutdownDrains starts a slow request on h2 and h3, shuts down and
// checks that both finish with 200 while new connections are refused.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	ca := newCA(t, "ca")
	dir := t.TempDir()
	cert := ca.issue(t, "s", []string{"localhost"}, false, "").write(t, dir, "s")
	l, err := New(config.Listener{Name: "drain", Address: "127.0.0.1:0", Role: "public",
		TLS: &config.ListenerTLS{Certs: []config.Cert{cert}}, HTTP3: h3Config()}, testLimits(), h,
		Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	url := "https://" + l.Addr().String() + "/"
	clients := map[string]*http.Client{"h2": h2Client(t, conf, true), "h3": h3Client(t, conf)}
	type result struct {
		name   string
		status int
		body   string
		err    error
	}
	results := make(chan result, 2)
	for name, c := range clients {
		go func() {
			resp, err := c.Get(url)
			if err != nil {
				results <- result{name: name, err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{name, resp.StatusCode, string(b), err}
		}()
	}
	<-entered
	<-entered
	if n := l.ActiveConns(); n != 2 {
		t.Errorf("ActiveConns during requests = %d, want 2", n)
	}
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownErr <- l.Shutdown(ctx)
	}()
	// New TCP connections are refused once Shutdown closed the listener.
	waitFor(t, "tcp listener closed", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)
	for range 2 {
		r := <-results
		if r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("%s in-flight request during shutdown: status %d body %q err %v", r.name, r.status, r.body, r.err)
		}
	}
	if err := <-shutdownErr; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := l.ActiveConns(); n != 0 {
		t.Fatalf("ActiveConns after Shutdown = %d", n)
	}
}

// TestShutdownDeadline checks that a handler that never ends does not hold
// Shutdown past its context, and that it sees its context canceled.
func TestShutdownDeadline(t *testing.T) {
	entered := make(chan struct{})
	canceled := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(canceled)
	})
	l, err := New(config.Listener{Name: "stuck", Address: "127.0.0.1:0"}, testLimits(), h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + l.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err = l.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past deadline: got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not canceled after forced close")
	}
}

func TestMetricsCountConnections(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if m2, err := NewMetrics(reg); err != nil || m2.active != m.active {
		t.Fatalf("second NewMetrics on the same registry: %v, same collectors %v", err, m2 != nil && m2.active == m.active)
	}
	hold := make(chan struct{})
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-hold
	})
	s := startTLS(t, config.Listener{Name: "m", HTTP3: h3Config()}, h, Options{Metrics: m})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, c := range []*http.Client{h2Client(t, s.clientTLS(), true), h3Client(t, s.clientTLS())} {
			wg.Go(func() {
				if resp, err := c.Get(s.url("/")); err == nil {
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}()
	<-entered
	<-entered
	for _, tr := range []string{"tcp", "quic"} {
		if v := metricValue(t, m.active.WithLabelValues("m", tr)); v != 1 {
			t.Errorf("active %s = %v, want 1", tr, v)
		}
		if v := metricValue(t, m.accepted.WithLabelValues("m", tr)); v != 1 {
			t.Errorf("accepted %s = %v, want 1", tr, v)
		}
	}
	close(hold)
	<-done
}

// metricValue reads a gauge or counter.
func metricValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}
