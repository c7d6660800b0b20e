package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

// Reload-under-load parameters (issue 3): at least 20 clients for at least
// 10 s while 200 reloads alternate between two valid configs, every tenth
// one invalid.
const (
	reloadClients  = 24
	reloadCount    = 200
	reloadInterval = 55 * time.Millisecond // 200 x 55 ms = 11 s of load
	streamChunks   = 5
	streamGap      = 15 * time.Millisecond
)

// backendHandler answers as cluster name: plain requests with the name and
// the request body length, /stream with streamChunks lines spread over time
// so that many requests are in flight across a snapshot swap.
func backendHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		if r.URL.Path == "/stream" {
			rc := http.NewResponseController(w)
			for i := range streamChunks {
				fmt.Fprintf(w, "%s %d\n", name, i)
				if err := rc.Flush(); err != nil {
					return
				}
				select {
				case <-time.After(streamGap):
				case <-r.Context().Done():
					return
				}
			}
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d", name, n)
	})
}

// reloadConfig is a config whose catch-all route goes to cluster; invalid
// configs also add a route to an unknown cluster, so they must be refused
// (and if they were applied, traffic would reach "red", which no valid
// config allows).
func reloadConfig(blue, green, red, cluster string, invalid bool) string {
	s := fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:0"}]
logging: {level: error}
clusters:
  - {name: blue, endpoints: [%q]}
  - {name: green, endpoints: [%q]}
  - {name: red, endpoints: [%q]}
routes:
  - {name: main, match: {path: {prefix: /}}, cluster: %s}
`, blue, green, red, cluster)
	if invalid {
		s += "  - {name: broken, match: {path: {prefix: /x}}, cluster: nowhere}\n"
	}
	return s
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// waitBaseline polls until goroutines and open files are back to (at most)
// their baseline, and fails with a goroutine dump otherwise.
func waitBaseline(t *testing.T, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("goroutines %d (baseline %d), open files %d (baseline %d) after teardown\n%s", g, goroutines, f, fds, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counterValue reads one series of a counter from the registry.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// loadStats are the clients' findings.
type loadStats struct {
	ok, failed atomic.Int64
	seen       sync.Map // backend name -> *atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (s *loadStats) fail(format string, args ...any) {
	s.failed.Add(1)
	s.mu.Lock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

func (s *loadStats) saw(name string) {
	c, _ := s.seen.LoadOrStore(name, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
}

// oneRequest makes request number i of a client and checks its answer: a
// 200 from an allowed backend, and a complete, consistent body.
func oneRequest(client *http.Client, base string, i int, st *loadStats) {
	var req *http.Request
	kind := i % 3
	switch kind {
	case 0:
		req, _ = http.NewRequest(http.MethodGet, base+"/get", nil)
	case 1:
		req, _ = http.NewRequest(http.MethodPost, base+"/post", strings.NewReader(strings.Repeat("x", 1000+i%500)))
	default:
		req, _ = http.NewRequest(http.MethodGet, base+"/stream", nil)
	}
	resp, err := client.Do(req)
	if err != nil {
		st.fail("%s %s: %v", req.Method, req.URL.Path, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		st.fail("%s %s: reading body: %v", req.Method, req.URL.Path, err)
		return
	}
	backend := resp.Header.Get("X-Backend")
	if resp.StatusCode != http.StatusOK {
		st.fail("%s %s: status %d: %s", req.Method, req.URL.Path, resp.StatusCode, body)
		return
	}
	if backend != "blue" && backend != "green" {
		st.fail("%s %s: answered by %q, which no valid config allows", req.Method, req.URL.Path, backend)
		return
	}
	var want string
	switch kind {
	case 0:
		want = backend + " 0"
	case 1:
		want = fmt.Sprintf("%s %d", backend, 1000+i%500)
	default:
		var b strings.Builder
		for c := range streamChunks {
			fmt.Fprintf(&b, "%s %d\n", backend, c)
		}
		want = b.String()
	}
	if string(body) != want {
		st.fail("%s %s: body %q, want %q", req.Method, req.URL.Path, body, want)
		return
	}
	st.saw(backend)
	st.ok.Add(1)
}

// TestReloadUnderLoad is the hot-reload acceptance test of issue 3.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("11 s load test")
	}
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	blue := httptest.NewServer(backendHandler("blue"))
	green := httptest.NewServer(backendHandler("green"))
	red := httptest.NewServer(backendHandler("red"))
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	cfgFor := func(cluster string, invalid bool) string {
		return reloadConfig(addr(blue), addr(green), addr(red), cluster, invalid)
	}
	path := filepath.Join(t.TempDir(), "wasmgate.yaml")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	metrics, err := observe.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.New(proxy.Options{ConfigPath: path, Metrics: metrics, Observer: metrics})
	write(cfgFor("blue", false))
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatalf("initial config: %v", err)
	}
	front := httptest.NewServer(srv)

	tr := &http.Transport{MaxIdleConnsPerHost: reloadClients, IdleConnTimeout: 30 * time.Second}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	// probe asserts which backend a fresh request reaches now.
	probe := func(want string) {
		t.Helper()
		resp, err := client.Get(front.URL + "/probe")
		if err != nil {
			t.Errorf("probe: %v", err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Backend"); got != want || resp.StatusCode != 200 {
			t.Errorf("probe reached %q (status %d), want %q", got, resp.StatusCode, want)
		}
	}
	probe("blue")

	// Clients stop starting requests when done is set; requests in flight
	// then finish normally and are checked like all others.
	var st loadStats
	var done atomic.Bool
	var wg sync.WaitGroup
	for c := range reloadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; !done.Load(); i++ {
				oneRequest(client, front.URL, i, &st)
			}
		}()
	}

	start := time.Now()
	live, valid, invalid, refused := "blue", 0, 0, 0
	var reloadErrs []string
	for i := range reloadCount {
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * reloadInterval)))
		if i%10 == 9 {
			invalid++
			write(cfgFor("red", true))
			if err := srv.Reload(context.Background()); err == nil {
				t.Errorf("reload %d: invalid config accepted", i)
			} else {
				refused++
			}
		} else {
			valid++
			next := "green"
			if live == "green" {
				next = "blue"
			}
			write(cfgFor(next, false))
			if err := srv.Reload(context.Background()); err != nil {
				reloadErrs = append(reloadErrs, fmt.Sprintf("reload %d: %v", i, err))
				continue
			}
			live = next
		}
		// The swap is done when Reload returns: new requests see it at once.
		probe(live)
	}
	elapsed := time.Since(start)
	done.Store(true)
	wg.Wait()

	for _, e := range reloadErrs {
		t.Error(e)
	}
	st.mu.Lock()
	for _, e := range st.errs {
		t.Error(e)
	}
	st.mu.Unlock()
	blueN, greenN := int64(0), int64(0)
	if v, ok := st.seen.Load("blue"); ok {
		blueN = v.(*atomic.Int64).Load()
	}
	if v, ok := st.seen.Load("green"); ok {
		greenN = v.(*atomic.Int64).Load()
	}
	t.Logf("%d clients, %v: %d requests ok (blue %d, green %d), %d failed; %d valid and %d invalid reloads (%d refused)",
		reloadClients, elapsed.Round(time.Millisecond), st.ok.Load(), blueN, greenN, st.failed.Load(), valid, invalid, refused)
	if st.failed.Load() != 0 {
		t.Errorf("%d requests failed", st.failed.Load())
	}
	if elapsed < 10*time.Second {
		t.Errorf("load ran %v, want at least 10s", elapsed)
	}
	if blueN == 0 || greenN == 0 || st.ok.Load() < int64(reloadCount) {
		t.Errorf("too little traffic reached both configs: blue %d, green %d", blueN, greenN)
	}
	if refused != reloadCount/10 {
		t.Errorf("refused %d invalid configs, want %d", refused, reloadCount/10)
	}
	if got := counterValue(t, reg, "wasmgate_config_reloads_total", "result", "error"); got != float64(reloadCount/10) {
		t.Errorf(`wasmgate_config_reloads_total{result="error"} = %v, want %d`, got, reloadCount/10)
	}
	if got := counterValue(t, reg, "wasmgate_config_reloads_total", "result", "ok"); got != float64(valid+1) {
		t.Errorf(`wasmgate_config_reloads_total{result="ok"} = %v, want %d`, got, valid+1)
	}

	tr.CloseIdleConnections()
	front.Close()
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(closeCtx); err != nil {
		t.Errorf("close: %v", err)
	}
	blue.Close()
	green.Close()
	red.Close()
	waitBaseline(t, baseG, baseFD)
}
