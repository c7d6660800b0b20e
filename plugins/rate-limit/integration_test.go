package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/redistest"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// These tests run the real thing: the wasmgate binary built from source,
// the rate-limit plugin built to .wasm, a real redis-server, and requests
// over loopback sockets.

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// wasmgateBinary builds cmd/wasmgate once per test binary.
func wasmgateBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		root, err := wasmbuild.ModuleRoot()
		if err != nil {
			binary.err = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			binary.err = err
			return
		}
		if binary.dir, err = os.MkdirTemp("", "wasmgate-bin-"); err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(binary.dir, "wasmgate")
		cmd := exec.Command(goBin, "build", "-o", binary.path, "./cmd/wasmgate")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/wasmgate: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// gateway is one running wasmgate process.
type gateway struct {
	t     *testing.T
	cmd   *exec.Cmd
	addr  string
	admin string
	out   *syncBuffer
	exit  chan struct{}
}

type gatewayConfig struct {
	redis       string
	storePolicy string
	upstream    string
	wasm        string
	plugin      string // rate-limit config as JSON
}

const configTemplate = `mode: edge
admin:
  address: %[1]s
logging:
  level: info
  format: json
  access_log:
    enabled: false
store:
  kind: redis
  redis:
    address: %[2]s
    timeout: 250ms
    failure_policy: %[3]s
wasm:
  cache_dir: %[4]q
  # Store calls run inside the guest call: leave room for Redis round trips
  # on a busy CI machine (the 20ms default is for local stores).
  call_timeout: 2s
listeners:
  - name: public
    address: %[5]s
routes:
  - name: ready
    match: {path: {exact: /ready}}
    direct: {status: 200, body: "ok"}
  - name: api
    match: {path: {prefix: /api/}}
    cluster: echo
    filters:
      - name: rate-limit
        plugin: %[6]q
        config: %[7]s
clusters:
  - name: echo
    endpoints: [%[8]q]
`

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startGateway starts wasmgate with gc and waits until it serves.
func startGateway(t *testing.T, name string, gc gatewayConfig) *gateway {
	t.Helper()
	bin := wasmgateBinary(t)
	g := &gateway{t: t, addr: freeAddr(t), admin: freeAddr(t), out: &syncBuffer{}, exit: make(chan struct{})}
	cfg := fmt.Sprintf(configTemplate, g.admin, gc.redis, gc.storePolicy, wasmbuild.CacheDir(),
		g.addr, gc.wasm, gc.plugin, gc.upstream)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "run", "-c", path)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.exit) }()
	t.Cleanup(g.stop)

	deadline := time.Now().Add(90 * time.Second) // a cold plugin compile under -race on a busy machine
	for {
		resp, err := http.Get("http://" + g.addr + "/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g
			}
		}
		select {
		case <-g.exit:
			t.Fatalf("%s exited before serving:\n%s", name, g.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving after 90s:\n%s", name, g.out.String())
		}
	}
}

// stop sends SIGTERM, waits for a clean exit, and checks that nothing
// panicked.
func (g *gateway) stop() {
	select {
	case <-g.exit:
	default:
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exit:
		case <-time.After(20 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.exit
			g.t.Errorf("wasmgate did not exit 20s after SIGTERM")
		}
	}
	if out := g.out.String(); strings.Contains(out, "panic") {
		g.t.Errorf("wasmgate output mentions a panic:\n%s", out)
	}
}

// alive fails the test if the process has exited.
func (g *gateway) alive() {
	g.t.Helper()
	select {
	case <-g.exit:
		g.t.Fatalf("wasmgate exited:\n%s", g.out.String())
	default:
	}
}

// redisUp reads wasmgate_store_redis_up from the admin /metrics.
func (g *gateway) redisUp() (float64, bool) {
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v float64
		if n, _ := fmt.Sscanf(sc.Text(), "wasmgate_store_redis_up %g", &v); n == 1 {
			return v, true
		}
	}
	return 0, false
}

func waitRedisUp(t *testing.T, want float64, gws ...*gateway) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, g := range gws {
		for {
			if v, ok := g.redisUp(); ok && v == want {
				break
			}
			if time.Now().After(deadline) {
				v, ok := g.redisUp()
				t.Fatalf("wasmgate_store_redis_up = %v (found %v), want %v:\n%s", v, ok, want, g.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// result counts statuses of a batch of requests.
type result struct {
	mu       sync.Mutex
	codes    map[int]int
	errs     int
	checkErr []string
}

func (r *result) add(code int, err error, problem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.codes == nil {
		r.codes = map[int]int{}
	}
	if err != nil {
		r.errs++
		return
	}
	r.codes[code]++
	if problem != "" && len(r.checkErr) < 5 {
		r.checkErr = append(r.checkErr, problem)
	}
}

// send makes n requests for client id, spread round robin over gws, with
// a few workers, and checks the headers of every answer.
func send(gws []*gateway, id string, n, workers int) *result {
	res := &result{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				g := gws[i%len(gws)]
				req, _ := http.NewRequest("GET", "http://"+g.addr+"/api/items", nil)
				req.Header.Set("X-Client", id)
				resp, err := client.Do(req)
				if err != nil {
					res.add(0, err, "")
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				res.add(resp.StatusCode, nil, checkHeaders(resp))
			}
		})
	}
	wg.Wait()
	return res
}

// checkHeaders returns a problem with the rate-limit headers of resp, or "".
func checkHeaders(resp *http.Response) string {
	h := resp.Header
	switch resp.StatusCode {
	case 200:
		if h.Get("RateLimit-Limit") == "" || h.Get("RateLimit-Remaining") == "" || h.Get("RateLimit-Reset") == "" {
			return fmt.Sprintf("200 without RateLimit headers: %v", h)
		}
	case 429:
		if h.Get("Retry-After") == "" || h.Get("RateLimit-Remaining") != "0" {
			return fmt.Sprintf("429 without Retry-After/RateLimit-Remaining 0: %v", h)
		}
	case 503:
		if h.Get("Retry-After") == "" {
			return fmt.Sprintf("503 without Retry-After: %v", h)
		}
	}
	return ""
}

type fixtureEnv struct {
	redis            string
	stopRedis        func()
	restartRedis     func()
	upstream, plugin string
}

func newEnv(t *testing.T) fixtureEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts wasmgate processes and redis-server")
	}
	addr, stop, restart := redistest.Start(t)
	up := httptest.NewServer(echo.Handler("echo"))
	t.Cleanup(up.Close)
	return fixtureEnv{
		redis: addr, stopRedis: stop, restartRedis: restart,
		upstream: strings.TrimPrefix(up.URL, "http://"),
		plugin:   wasmbuild.Build(t, "plugins/rate-limit"),
	}
}

// TestTwoProxiesShareOneRedis: a limit of 50 per minute holds across two
// proxies that share a Redis.
func TestTwoProxiesShareOneRedis(t *testing.T) {
	env := newEnv(t)
	cfg := gatewayConfig{
		redis: env.redis, storePolicy: "fail_open", upstream: env.upstream, wasm: env.plugin,
		plugin: `{"limits":[{"name":"shared","requests":50,"window":"1m","key":["client_ip"]}]}`,
	}
	a := startGateway(t, "a", cfg)
	b := startGateway(t, "b", cfg)
	// The sliding window lets in up to quota × (time into the new minute /
	// 1m) more when a burst straddles a minute boundary; start the burst
	// well inside a minute so the count is the plain quota.
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 20*time.Second {
		time.Sleep(left)
	}
	res := send([]*gateway{a, b}, "x", 200, 4)
	if res.errs != 0 {
		t.Fatalf("%d requests failed to connect", res.errs)
	}
	if len(res.checkErr) > 0 {
		t.Fatalf("header problems: %v", res.checkErr)
	}
	ok := res.codes[200]
	if ok < 50 || ok > 52 || ok+res.codes[429] != 200 {
		t.Fatalf("statuses %v: want 50..52 allowed and the rest 429", res.codes)
	}
	t.Logf("200 requests over two proxies: %v", res.codes)
}

// TestRedisOutage kills Redis while both proxies are under load and checks
// each failure policy, that nothing crashes, and that limits are global
// again once Redis is back.
func TestRedisOutage(t *testing.T) {
	tests := []struct {
		name        string
		storePolicy string
		limitPolicy string
		// outageAllowed is how many of 30 requests (15 per proxy, quota 10)
		// pass while Redis is down; -1 means all must be 503.
		outageAllowed int
	}{
		{"store fail_open falls back to local limits", "fail_open", "fail_closed", 20},
		{"limit fail_open counts locally", "fail_closed", "fail_open", 20},
		{"limit fail_closed answers 503", "fail_closed", "fail_closed", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			cfg := gatewayConfig{
				redis: env.redis, storePolicy: tc.storePolicy, upstream: env.upstream, wasm: env.plugin,
				plugin: fmt.Sprintf(`{"limits":[{"name":"outage","requests":10,"window":"1h","key":["header:X-Client"],"failure_policy":%q}]}`, tc.limitPolicy),
			}
			gws := []*gateway{startGateway(t, "a", cfg), startGateway(t, "b", cfg)}

			// Background load on its own key, running through the outage.
			bg, stopBG := context.WithCancel(context.Background())
			bgRes := &result{}
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; bg.Err() == nil; i++ {
					r := send(gws, "background", 4, 2)
					bgRes.mu.Lock()
					for code, n := range r.codes {
						if bgRes.codes == nil {
							bgRes.codes = map[int]int{}
						}
						bgRes.codes[code] += n
					}
					bgRes.errs += r.errs
					bgRes.mu.Unlock()
				}
			})
			defer func() { stopBG(); wg.Wait() }()

			// Redis up: the limit is global.
			if got := send(gws, "before", 30, 3).codes[200]; got < 10 || got > 12 {
				t.Fatalf("before the outage: %d allowed of 30, want 10..12", got)
			}

			env.stopRedis()
			waitRedisUp(t, 0, gws...)
			res := send(gws, "during", 30, 3)
			if res.errs != 0 {
				t.Fatalf("during the outage %d requests failed to connect", res.errs)
			}
			if len(res.checkErr) > 0 {
				t.Fatalf("header problems during the outage: %v", res.checkErr)
			}
			if tc.outageAllowed < 0 {
				if res.codes[503] != 30 {
					t.Fatalf("during the outage: statuses %v, want all 503", res.codes)
				}
			} else if res.codes[200] != tc.outageAllowed || res.codes[429] != 30-tc.outageAllowed {
				t.Fatalf("during the outage: statuses %v, want %d allowed (10 per proxy, local) and the rest 429",
					res.codes, tc.outageAllowed)
			}
			for _, g := range gws {
				g.alive()
			}

			env.restartRedis()
			waitRedisUp(t, 1, gws...)
			res = send(gws, "after", 30, 3)
			if got := res.codes[200]; got < 10 || got > 12 || got+res.codes[429] != 30 {
				t.Fatalf("after Redis returned: statuses %v, want 10..12 allowed (global again), the rest 429", res.codes)
			}

			stopBG()
			wg.Wait()
			bgRes.mu.Lock()
			defer bgRes.mu.Unlock()
			for code, n := range bgRes.codes {
				if code != 200 && code != 429 && !(code == 503 && tc.outageAllowed < 0) {
					t.Errorf("background load got %d × status %d", n, code)
				}
			}
			if bgRes.errs != 0 {
				t.Errorf("background load: %d connection errors", bgRes.errs)
			}
			for _, g := range gws {
				g.alive()
				if n := strings.Count(g.out.String(), "redis unreachable"); n < 1 || n > 3 {
					t.Errorf("%d 'redis unreachable' log lines, want one per outage:\n%s", n, g.out.String())
				}
			}
			t.Logf("background load statuses: %v", bgRes.codes)
		})
	}
}

// syncBuffer is a bytes buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
