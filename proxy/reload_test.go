package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
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

	"github.com/coder/websocket"
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

// numGoroutines counts goroutines, leaving out os/signal's dispatch loop:
// it starts with the first signal.Notify (the gateway's SIGHUP handler) and
// lives as long as the process.
func numGoroutines() int {
	n := runtime.NumGoroutine()
	buf := make([]byte, 1<<20)
	if strings.Contains(string(buf[:runtime.Stack(buf, true)]), "os/signal.loop") {
		n--
	}
	return n
}

// waitBaseline polls until goroutines and open files are back to (at most)
// their baseline, and fails with a goroutine dump otherwise.
func waitBaseline(t *testing.T, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, f := numGoroutines(), openFDs(t)
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
	baseG, baseFD := numGoroutines(), openFDs(t)

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
		// The swap is done when Reload returns: new requests see it at once,
		// and a refused config leaves the old one serving. (Probing every
		// reload would pace the reloads by request latency under load.)
		if i%10 >= 8 {
			probe(live)
		}
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

// drainBackend serves the requests in flight during a shutdown: /slow
// answers after a delay, /stream sends chunks over time, /forever streams
// until the client goes away, /ws echoes WebSocket messages. started gets
// one value per request that reached it.
func drainBackend(t *testing.T, started chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- r.URL.Path
		rc := http.NewResponseController(w)
		switch r.URL.Path {
		case "/slow":
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, "slow done")
		case "/stream", "/forever":
			for i := 0; r.URL.Path == "/forever" || i < 10; i++ {
				if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
					return
				}
				if rc.Flush() != nil {
					return
				}
				select {
				case <-time.After(60 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				t.Errorf("backend websocket accept: %v", err)
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}
	})
}

func startGateway(t *testing.T, backend string, drain time.Duration) *proxy.Gateway {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`listeners: [{name: public, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
logging: {level: error, access_log: {enabled: false}}
wasm: {cache_dir: %q}
shutdown: {drain_timeout: %s}
clusters: [{name: app, endpoints: [%q]}]
routes: [{name: all, match: {path: {prefix: /}}, cluster: app, timeout: 30s}]
`, filepath.Join(dir, "cache"), drain, backend)
	return bootGateway(t, dir, src)
}

// TestGracefulShutdown shuts a gateway down with requests in flight: a slow
// answer, a long streaming response and a WebSocket session. Readiness must
// go false, new connections must be refused, every request in flight must
// complete, and Shutdown must return within the drain time.
func TestGracefulShutdown(t *testing.T) {
	baseG, baseFD := numGoroutines(), openFDs(t)
	started := make(chan string, 16)
	be := httptest.NewServer(drainBackend(t, started))
	g := startGateway(t, be.Listener.Addr().String(), 10*time.Second)
	base := "http://" + g.Listeners()[0].Addr().String()
	admin := "http://" + g.AdminAddr()
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	status := func(url string) int {
		resp, err := client.Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(admin + "/readyz"); got != 200 {
		t.Fatalf("readyz before shutdown = %d", got)
	}

	// Requests in flight: two slow answers and two streams.
	type result struct {
		path, body string
		err        error
	}
	results := make(chan result, 4)
	for _, p := range []string{"/slow", "/slow", "/stream", "/stream"} {
		go func() {
			resp, err := client.Get(base + p)
			if err != nil {
				results <- result{p, "", err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			results <- result{p, string(b), err}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("websocket through the gateway: %v", err)
	}
	defer ws.CloseNow()
	for range 5 {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("requests did not reach the backend")
		}
	}

	shutdownStart := time.Now()
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- g.Shutdown(context.Background()) }()

	// Readiness goes false and new connections are refused while draining.
	deadline := time.Now().Add(5 * time.Second)
	for status(admin+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("readyz did not turn 503 during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts connections during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The WebSocket opened before the shutdown still works.
	for i := range 3 {
		msg := fmt.Sprintf("still here %d", i)
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("websocket write during drain: %v", err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("websocket echo during drain = %q, %v", got, err)
		}
	}
	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown returned (%v) while a WebSocket was open", err)
	default:
	}
	if err := ws.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("websocket close: %v", err)
	}

	var wantStream strings.Builder
	for i := range 10 {
		fmt.Fprintf(&wantStream, "chunk %d\n", i)
	}
	for range 4 {
		r := <-results
		want := "slow done"
		if r.path == "/stream" {
			want = wantStream.String()
		}
		if r.err != nil || r.body != want {
			t.Errorf("in-flight %s = %q, %v; want %q", r.path, r.body, r.err, want)
		}
	}
	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last request ended")
	}
	t.Logf("drained in %v", time.Since(shutdownStart).Round(time.Millisecond))
	tr.CloseIdleConnections()
	be.Close()
	waitBaseline(t, baseG, baseFD)
}

// TestShutdownDrainTimeout checks that a response that never ends does not
// hold the process: Shutdown returns soon after the drain timeout.
func TestShutdownDrainTimeout(t *testing.T) {
	baseG, baseFD := numGoroutines(), openFDs(t)
	started := make(chan string, 4)
	be := httptest.NewServer(drainBackend(t, started))
	g := startGateway(t, be.Listener.Addr().String(), 500*time.Millisecond)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	resp, err := client.Get("http://" + g.Listeners()[0].Addr().String() + "/forever")
	if err != nil {
		t.Fatal(err)
	}
	<-started
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	_, _ = io.Copy(io.Discard, resp.Body) // ends when the gateway cuts the stream
	resp.Body.Close()
	select {
	case err := <-done:
		t.Logf("Shutdown after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hangs on a response that never ends")
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("stream cut after %v, before the 500ms drain timeout", took)
	}
	tr.CloseIdleConnections()
	be.Close()
	waitBaseline(t, baseG, baseFD)
}
