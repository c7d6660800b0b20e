package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/plugins/keyhash"
)

// env is what every scenario shares: binaries, the work directory, the
// upstream and the CPU layout.
type env struct {
	root     string
	work     string
	cache    string // wasm compilation cache kept across runs
	wasmgate string
	plugins  string // directory of .wasm files
	procAdd  string // add-header built as a process plugin
	// abiHeader is the host tests' raw-ABI guest that sets one request
	// header (Go, http-wasm ABI directly, no SDK).
	abiHeader string
	upstream  string // host:port of the trivial upstream
	taskset   string // path of taskset, "" when not pinning
	conc      int
}

// running is a started scenario.
type running struct {
	target *target
	pids   func() []int
	stop   func()
	// admin is the wasmgate admin address ("" when off), read for the Wasm
	// time split.
	admin string
	// mtls, for the sidecar pair, reads the TLS handshakes and the
	// requests the inbound sidecar has seen so far.
	mtls func() (handshakes, requests float64, ok bool)
}

// scenario is one row of the table.
type scenario struct {
	Name string
	// Kind groups filter scenarios for the overhead table: native, wasm, process.
	Kind  string
	Desc  string
	Proto string
	start func(e *env) (*running, error)
}

const apiKey = "bench-key-0123456789"

// postBody is the POST scenarios' body: 1 KiB of JSON, an API call's size.
var postBody = func() []byte {
	b := []byte(`{"items":[`)
	for len(b) < 1000 {
		b = append(b, `{"sku":"A-1001","qty":2},`...)
	}
	b[len(b)-1] = ']'
	b = append(b, '}')
	for len(b) < 1024 {
		b = append(b, ' ')
	}
	return b
}()

// posting makes a scenario send POSTs of postBody instead of GETs.
func posting(start func(e *env) (*running, error)) func(e *env) (*running, error) {
	return func(e *env) (*running, error) {
		r, err := start(e)
		if err != nil {
			return nil, err
		}
		r.target.body = postBody
		return r, nil
	}
}

func scenarios() []scenario {
	return []scenario{
		{Name: "direct", Desc: "client to the upstream, no proxy", Proto: "h1", start: startDirect},
		{Name: "stdlib", Desc: "net/http/httputil.ReverseProxy, MaxIdleConnsPerHost 1024", Proto: "h1", start: startStdlib},
		{Name: "bare", Desc: "wasmgate, no filters", Proto: "h1", start: gateway(nil, "h1")},
		{Name: "stdlib-post", Desc: "the stdlib proxy, POST of a 1 KiB JSON body", Proto: "h1", start: posting(startStdlib)},
		{Name: "bare-post", Desc: "wasmgate, no filters, POST of a 1 KiB JSON body", Proto: "h1", start: posting(gateway(nil, "h1"))},
		{Name: "native", Kind: "native", Desc: "builtin headers filter (Go)", Proto: "h1", start: gateway(nativeFilter, "h1")},
		{Name: "wasm", Kind: "wasm", Desc: "add-header.wasm, a request and a response header (two guest calls)", Proto: "h1", start: gateway(wasmFilter, "h1")},
		{Name: "wasm-req", Kind: "wasm", Desc: "add-header.wasm, a request header only (one guest call: no response hook)", Proto: "h1", start: gateway(wasmReqFilter, "h1")},
		{Name: "wasm-abi", Kind: "wasm", Desc: "a raw http-wasm ABI guest in Go (no SDK) setting one request header: the host's own cost", Proto: "h1", start: gateway(wasmABIFilter, "h1")},
		{Name: "process", Kind: "process", Desc: "add-header as a process plugin (go-plugin gRPC)", Proto: "h1", start: gateway(processFilter, "h1")},
		{Name: "chain", Kind: "wasm-chain", Desc: "api-key + rate-limit + authz + transform (Wasm)", Proto: "h1", start: gateway(chainFilters, "h1")},
		{Name: "h2", Desc: "wasmgate, no filters, HTTP/2 over TLS", Proto: "h2", start: gateway(nil, "h2")},
		{Name: "h3", Desc: "wasmgate, no filters, HTTP/3 over QUIC", Proto: "h3", start: gateway(nil, "h3")},
		{Name: "sidecar-pair", Desc: "app -> sidecar outbound -> mTLS -> sidecar inbound -> upstream", Proto: "h1", start: startSidecarPair},
	}
}

const addHeaderConfig = `{request: {X-Bench: "yes"}, response: {X-Bench-Resp: "yes"}}`

func nativeFilter(e *env) string {
	return `[{name: hdr, kind: headers, config: {request_set: {X-Bench: "yes"}, response_set: {X-Bench-Resp: "yes"}}}]`
}

func wasmFilter(e *env) string {
	return fmt.Sprintf(`[{name: add-header, plugin: %q, config: %s}]`, filepath.Join(e.plugins, "add-header.wasm"), addHeaderConfig)
}

func wasmReqFilter(e *env) string {
	return fmt.Sprintf(`[{name: add-header, plugin: %q, config: {request: {X-Bench: "yes"}}}]`, filepath.Join(e.plugins, "add-header.wasm"))
}

func wasmABIFilter(e *env) string {
	return fmt.Sprintf(`[{name: header-abi, plugin: %q}]`, e.abiHeader)
}

func processFilter(e *env) string {
	return fmt.Sprintf(`[{name: add-header, kind: process, plugin: %q, config: %s}]`, e.procAdd, addHeaderConfig)
}

func chainFilters(e *env) string {
	p := func(n string) string { return filepath.Join(e.plugins, n+".wasm") }
	return fmt.Sprintf(`
      - {name: api-key, plugin: %q, config: {keys: [{hash: %q, consumer: bench, tier: free}]}}
      - {name: rate-limit, plugin: %q, config: {limits: [{name: high, requests: 1000000000, window: 1s, key: [consumer]}]}}
      - {name: authz, plugin: %q, config: {rules: [{name: consumers, action: allow, consumers: ["*"]}]}}
      - name: transform
        plugin: %q
        config:
          request: {headers: {set: {x-consumer: "${consumer}", x-request-id: "${request_id}"}, remove: [x-debug]}}
          response: {headers: {set: {x-served-by: wasmgate}}}`,
		p("api-key"), keyhash.Hash(apiKey), p("rate-limit"), p("authz"), p("transform"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command returns cmd pinned to CPU 0 when taskset is in use.
func (e *env) command(bin string, args ...string) *exec.Cmd {
	if e.taskset != "" {
		return exec.Command(e.taskset, append([]string{"-c", "0", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// startProc starts cmd with its output in the work directory and returns
// a stop function that sends SIGTERM and waits (SIGKILL after 10s).
func (e *env) startProc(name string, cmd *exec.Cmd) (func(), error) {
	logf, err := os.Create(filepath.Join(e.work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}, nil
}

// waitReady polls until t answers 2xx or the deadline passes.
func waitReady(t *target, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := t.do(ctx)
		cancel()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) newTarget(proto, rawURL string) *target {
	c, closeFn := newClient(proto, e.conc)
	return &target{url: rawURL, client: c, close: closeFn}
}

func startDirect(e *env) (*running, error) {
	t := e.newTarget("h1", "http://"+e.upstream+"/")
	return &running{target: t, pids: func() []int { return nil }, stop: func() {}}, nil
}

func startStdlib(e *env) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := e.command(self, "stdlib-proxy", fmt.Sprintf("127.0.0.1:%d", port), "http://"+e.upstream)
	cmd.Env = append(os.Environ(), "BENCH_CHILD=1")
	stop, err := e.startProc("stdlib", cmd)
	if err != nil {
		return nil, err
	}
	t := e.newTarget("h1", fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err := waitReady(t, 20*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("stdlib proxy: %w", err)
	}
	pid := cmd.Process.Pid
	return &running{target: t, pids: func() []int { return []int{pid} }, stop: stop}, nil
}

// runStdlibProxy is the baseline: httputil.ReverseProxy with a transport
// tuned as a production Go proxy would be (the default of 2 idle
// connections per host halves throughput).
func runStdlibProxy(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: bench stdlib-proxy LISTEN UPSTREAM_URL")
	}
	u, err := url.Parse(args[1])
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4096
	tr.MaxIdleConnsPerHost = 1024
	tr.DisableCompression = true
	rp.Transport = tr
	srv := &http.Server{Addr: args[0], Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		notifyTerm(sig)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// gateway returns a scenario start that runs wasmgate with filters on one
// route; proto h2 and h3 use a TLS listener with HTTP/3.
func gateway(filters func(e *env) string, proto string) func(e *env) (*running, error) {
	return func(e *env) (*running, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		listener := fmt.Sprintf(`{name: http, address: "127.0.0.1:%d"}`, port)
		scheme := "http"
		if proto != "h1" {
			scheme = "https"
			listener = fmt.Sprintf(`{name: https, address: "127.0.0.1:%d", tls: {self_signed: true, certs: [{cert_file: %q, key_file: %q}]}, http3: {}}`,
				port, filepath.Join(e.work, "tls", "cert.pem"), filepath.Join(e.work, "tls", "key.pem"))
		}
		fl := "[]"
		admin := ""
		if filters != nil {
			fl = filters(e)
			ap, err := freePort()
			if err != nil {
				return nil, err
			}
			admin = fmt.Sprintf("127.0.0.1:%d", ap)
		}
		adminAddr := admin
		if adminAddr == "" {
			adminAddr = "off"
		}
		cfg := fmt.Sprintf(`mode: edge
listeners: [%s]
admin: {address: %q}
logging: {level: warn, access_log: {enabled: false}}
shutdown: {drain_timeout: 2s}
wasm: {cache_dir: %q}
clusters: [{name: up, endpoints: ["%s"]}]
routes:
  - name: bench
    cluster: up
    filters: %s
`, listener, adminAddr, e.cache, e.upstream, fl)
		name := fmt.Sprintf("wasmgate-%d", port)
		path := filepath.Join(e.work, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		cmd := e.command(e.wasmgate, "run", "-c", path)
		stop, err := e.startProc(name, cmd)
		if err != nil {
			return nil, err
		}
		t := e.newTarget(proto, fmt.Sprintf("%s://127.0.0.1:%d/", scheme, port))
		if filters != nil && strings.Contains(fl, "api-key") {
			t.header = http.Header{"X-Api-Key": {apiKey}}
		}
		if err := waitReady(t, 60*time.Second); err != nil {
			stop()
			t.close()
			return nil, fmt.Errorf("wasmgate (%s): %w; log %s", path, err, filepath.Join(e.work, name+".log"))
		}
		pid := cmd.Process.Pid
		return &running{target: t, pids: func() []int { return family([]int{pid}) }, stop: func() { t.close(); stop() }, admin: admin}, nil
	}
}

// startSidecarPair runs two sidecars: the client calls A's outbound
// listener with Host "b"; A calls B's inbound over mTLS with its SPIFFE
// identity; B forwards to the upstream as its local app.
func startSidecarPair(e *env) (*running, error) {
	dir := filepath.Join(e.work, "mesh")
	_ = os.RemoveAll(dir)
	if out, err := exec.Command(e.wasmgate, "ca", "init", "--trust-domain", "bench.local", "--out", filepath.Join(dir, "ca")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ca init: %v: %s", err, out)
	}
	for _, s := range []string{"a", "b"} {
		if out, err := exec.Command(e.wasmgate, "ca", "issue", "--service", s, "--ca", filepath.Join(dir, "ca"), "--out", filepath.Join(dir, s)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ca issue %s: %v: %s", s, err, out)
		}
	}
	var ports [4]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	aIn, aOut, bIn, bAdmin := ports[0], ports[1], ports[2], ports[3]
	write := func(svc string, in int, outbound string) (string, error) {
		admin := "off"
		if svc == "b" {
			admin = fmt.Sprintf("127.0.0.1:%d", bAdmin) // for the handshake count
		}
		cfg := fmt.Sprintf(`mode: sidecar
admin: {address: %[7]q}
logging: {level: warn, access_log: {enabled: false}}
shutdown: {drain_timeout: 2s}
mesh:
  trust_domain: bench.local
  service: %[1]s
  cert_file: %[2]s/cert.pem
  key_file: %[2]s/key.pem
  bundle_file: %[2]s/bundle.pem
  inbound: {address: "127.0.0.1:%[3]d", app: "%[4]s", mtls: strict}
%[5]s
  services:
    - {name: b, endpoints: ["127.0.0.1:%[6]d"]}
`, svc, filepath.Join(dir, svc), in, e.upstream, outbound, bIn, admin)
		path := filepath.Join(dir, svc+".yaml")
		return path, os.WriteFile(path, []byte(cfg), 0o644)
	}
	aCfg, err := write("a", aIn, fmt.Sprintf("  outbound: {address: \"127.0.0.1:%d\"}", aOut))
	if err != nil {
		return nil, err
	}
	bCfg, err := write("b", bIn, "")
	if err != nil {
		return nil, err
	}
	bCmd := e.command(e.wasmgate, "run", "-c", bCfg)
	stopB, err := e.startProc("sidecar-b", bCmd)
	if err != nil {
		return nil, err
	}
	aCmd := e.command(e.wasmgate, "run", "-c", aCfg)
	stopA, err := e.startProc("sidecar-a", aCmd)
	if err != nil {
		stopB()
		return nil, err
	}
	t := e.newTarget("h1", fmt.Sprintf("http://127.0.0.1:%d/", aOut))
	t.host = "b"
	stop := func() { t.close(); stopA(); stopB() }
	if err := waitReady(t, 60*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("sidecar pair: %w; logs in %s", err, e.work)
	}
	pa, pb := aCmd.Process.Pid, bCmd.Process.Pid
	mtls := func() (float64, float64, bool) {
		m, err := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", bAdmin))
		if err != nil {
			return 0, 0, false
		}
		// The listener counts a TLS connection once its handshake passed.
		hs := m.sum("wasmgate_listener_connections_total", `listener="mesh-inbound"`)
		reqs := m.sum("wasmgate_http_requests_total", "") // b serves only its inbound
		return hs, reqs, true
	}
	return &running{target: t, pids: func() []int { return []int{pa, pb} }, stop: stop, mtls: mtls}, nil
}

// metricsText is a Prometheus text exposition.
type metricsText string

// scrape fetches a /metrics page.
func scrape(url string) (metricsText, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return metricsText(b), nil
}

// sum adds the samples of metric name whose labels contain match.
func (m metricsText) sum(name, match string) float64 {
	total := 0.0
	for _, line := range strings.Split(string(m), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, match) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				total += v
			}
		}
	}
	return total
}
