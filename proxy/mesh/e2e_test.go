package mesh_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/cmd/meshdemo-app/demoapp"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/mesh"
)

const td = "e2e.test"

func spiffe(svc string) string { return "spiffe://" + td + "/ns/default/sa/" + svc }

// testMesh is the demo topology, in-process on loopback: an edge, three
// sidecars (real wasmgate gateways) and the three demo apps.
type testMesh struct {
	dir      string
	caDir    string
	edge     string // edge listener address
	inbound  map[string]string
	outbound map[string]string
	gateways map[string]*proxy.Gateway
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveApp serves h on a fresh loopback port until the test ends.
func serveApp(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startMesh(t *testing.T) *testMesh {
	t.Helper()
	authz := wasmbuild.Build(t, "plugins/authz")
	ratelimit := wasmbuild.Build(t, "plugins/rate-limit")
	m := &testMesh{
		dir:      t.TempDir(),
		inbound:  map[string]string{},
		outbound: map[string]string{},
		gateways: map[string]*proxy.Gateway{},
	}
	m.caDir = filepath.Join(m.dir, "ca")
	if _, err := mesh.InitCA(m.caDir, td); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"edge", "orders", "payments", "notifications"} {
		m.issue(t, s)
	}
	for _, s := range []string{"orders", "payments", "notifications"} {
		m.inbound[s] = freePort(t)
	}
	m.outbound["orders"] = freePort(t)
	m.outbound["notifications"] = freePort(t)
	m.edge = freePort(t)

	apps := map[string]string{}
	for _, s := range []string{"orders", "payments", "notifications"} {
		h, err := demoapp.New(demoapp.Options{Service: s, Outbound: m.outbound[s]})
		if err != nil {
			t.Fatal(err)
		}
		apps[s] = serveApp(t, h)
	}

	// Registry: the three services, plus "imposter", which expects payments'
	// identity but points at the notifications sidecar.
	writeFile(t, filepath.Join(m.dir, "services.yaml"), fmt.Sprintf(`
services:
  - {name: orders, endpoints: [%q]}
  - {name: payments, endpoints: [%q]}
  - {name: notifications, endpoints: [%q]}
  - {name: imposter, spiffe_id: %q, endpoints: [%q]}
`, m.inbound["orders"], m.inbound["payments"], m.inbound["notifications"], spiffe("payments"), m.inbound["notifications"]))

	common := fmt.Sprintf(`
admin: {address: "off"}
logging: {access_log: {enabled: false}}
wasm: {cache_dir: %q, call_timeout: 2s}
`, wasmbuild.CacheDir())
	sidecar := func(svc, mtls, filters string, outbound bool) string {
		out := ""
		if outbound {
			out = fmt.Sprintf("  outbound: {address: %q, timeout: 5s}\n", m.outbound[svc])
		}
		return fmt.Sprintf(`mode: sidecar
%s
mesh:
  trust_domain: %s
  service: %s
  cert_file: %s/cert.pem
  key_file: %s/key.pem
  bundle_file: %s/bundle.pem
  registry_file: services.yaml
  inbound:
    address: %q
    app: %q
    mtls: %s
    identity_header: x-forwarded-client-cert
%s%s`, common, td, svc, svc, svc, svc, m.inbound[svc], apps[svc], mtls, filters, out)
	}
	writeFile(t, filepath.Join(m.dir, "orders.yaml"), sidecar("orders", "permissive", "", true))
	writeFile(t, filepath.Join(m.dir, "notifications.yaml"), sidecar("notifications", "strict", "", true))
	// payments: a per-caller rate limit (only for requests carrying
	// x-bucket, so other subtests are not limited), then authz.
	writeFile(t, filepath.Join(m.dir, "payments.yaml"), sidecar("payments", "strict", fmt.Sprintf(`    filters:
      - name: per-caller
        plugin: %q
        config:
          limits:
            - {name: per-caller, requests: 3, window: 1m, key: ["property:peer_id", "header:x-bucket"], on_missing: skip}
      - name: authz
        plugin: %q
        config:
          default: deny
          rules:
            - {name: orders-may-charge, action: allow, peer_ids: [%q], methods: [POST], paths: [/charge]}
`, ratelimit, authz, spiffe("orders")), false))
	edgeCluster := func(name, svc string) string {
		return fmt.Sprintf(`  - name: %s
    endpoints: [%q]
    protocol: h2
    tls: {cert_file: edge/cert.pem, key_file: edge/key.pem, ca_file: edge/bundle.pem, spiffe_id: %q}
`, name, m.inbound[svc], spiffe(svc))
	}
	writeFile(t, filepath.Join(m.dir, "edge.yaml"), fmt.Sprintf(`mode: edge
%s
listeners: [{name: http, address: %q}]
routes:
  - {match: {path: {prefix: /orders/}}, strip_prefix: /orders, cluster: orders}
  - {match: {path: {prefix: /notifications/}}, strip_prefix: /notifications, cluster: notifications}
clusters:
%s%s`, common, m.edge, edgeCluster("orders", "orders"), edgeCluster("notifications", "notifications")))

	for _, name := range []string{"payments", "orders", "notifications", "edge"} {
		m.start(t, name)
	}
	return m
}

func (m *testMesh) issue(t *testing.T, svc string) {
	t.Helper()
	if _, _, err := mesh.Issue(mesh.IssueOptions{CADir: m.caDir, OutDir: filepath.Join(m.dir, svc), Service: svc, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

func (m *testMesh) start(t *testing.T, name string) {
	t.Helper()
	m.gateways[name] = startGateway(t, filepath.Join(m.dir, name+".yaml"))
}

// startGateway runs a wasmgate gateway on config until the test ends.
func startGateway(t testing.TB, config string) *proxy.Gateway {
	t.Helper()
	// Generous: on a cold compilation cache under -race, compiling the
	// plugins dominates (they are compiled once and cached for the suite).
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	g, err := proxy.NewGateway(ctx, proxy.GatewayOptions{
		ConfigPath:   config,
		LogOutput:    io.Discard,
		AccessOutput: io.Discard,
	})
	if err != nil {
		t.Fatalf("gateway %s: %v", config, err)
	}
	// Start's context lives as long as the gateway (the file watcher uses it).
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("gateway %s start: %v", config, err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(sctx); err != nil {
			t.Errorf("gateway %s shutdown: %v", config, err)
		}
	})
	return g
}

// identity returns a Source for svc's identity files (following rotations).
func (m *testMesh) identity(t *testing.T, svc string) *mesh.Source {
	t.Helper()
	d := filepath.Join(m.dir, svc)
	s, err := mesh.NewSource(mesh.SourceOptions{
		CertFile: filepath.Join(d, mesh.CertFile), KeyFile: filepath.Join(d, mesh.KeyFile), BundleFile: filepath.Join(d, mesh.BundleFile),
		Debounce: 20 * time.Millisecond, PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

type answer = demoapp.Answer

func do(t *testing.T, c *http.Client, req *http.Request) (int, answer) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	_ = json.Unmarshal(b, &a)
	return resp.StatusCode, a
}

func client(conf *tls.Config, keepAlive bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, DisableKeepAlives: !keepAlive}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func connections(t testing.TB, g *proxy.Gateway, listener string) float64 {
	t.Helper()
	mfs, err := g.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "wasmgate_listener_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func TestMeshEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four gateways and builds the authz plugin")
	}
	m := startMesh(t)
	plain := client(nil, true)

	t.Run("checkout: identities and trace at every hop", func(t *testing.T) {
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.edge+"/orders/checkout", nil)
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		code, a := do(t, plain, req)
		if code != http.StatusOK || a.Result != "order placed" || len(a.Hops) != 2 {
			t.Fatalf("status %d answer %+v", code, a)
		}
		want := []demoapp.Hop{
			{Service: "orders", VerifiedCaller: spiffe("edge"), TraceID: traceID},
			{Service: "payments", VerifiedCaller: spiffe("orders"), TraceID: traceID},
		}
		for i := range want {
			if a.Hops[i] != want[i] {
				t.Errorf("hop %d = %+v, want %+v", i, a.Hops[i], want[i])
			}
		}
		// Without a traceparent from the client the edge starts one, and
		// every hop shares it.
		req, _ = http.NewRequest(http.MethodGet, "http://"+m.edge+"/orders/checkout", nil)
		code, a = do(t, plain, req)
		if code != http.StatusOK || len(a.Hops) != 2 || a.Hops[0].TraceID == "" || a.Hops[0].TraceID != a.Hops[1].TraceID {
			t.Fatalf("generated trace: status %d hops %+v", code, a.Hops)
		}
	})

	t.Run("notifications to payments denied by authz", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.edge+"/notifications/charge", nil)
		code, a := do(t, plain, req)
		if code != http.StatusForbidden || a.DownstreamStatus != http.StatusForbidden || len(a.Hops) != 1 ||
			a.Hops[0].VerifiedCaller != spiffe("edge") || !strings.Contains(string(a.Downstream), "403") {
			t.Fatalf("status %d answer %+v downstream %s", code, a, a.Downstream)
		}
	})

	orders := m.identity(t, "orders")
	t.Run("strict refuses a client without certificate", func(t *testing.T) {
		conf := orders.ClientTLS(spiffe("payments"))
		conf.GetClientCertificate = nil
		_, err := client(conf, false).Get("https://" + m.inbound["payments"] + "/charge")
		if err == nil {
			t.Fatal("payments' strict inbound answered a client without certificate")
		}
		// With orders' certificate the same call goes through to the app.
		req, _ := http.NewRequest(http.MethodPost, "https://"+m.inbound["payments"]+"/charge", nil)
		code, a := do(t, client(orders.ClientTLS(spiffe("payments")), false), req)
		if code != http.StatusOK || a.Hops[0].VerifiedCaller != spiffe("orders") {
			t.Fatalf("with certificate: status %d answer %+v", code, a)
		}
	})

	t.Run("rate limit keyed by the calling service", func(t *testing.T) {
		notifications := m.identity(t, "notifications")
		call := func(src *mesh.Source) int {
			req, _ := http.NewRequest(http.MethodPost, "https://"+m.inbound["payments"]+"/charge", nil)
			req.Header.Set("x-bucket", "rl-test")
			code, _ := do(t, client(src.ClientTLS(spiffe("payments")), false), req)
			return code
		}
		var got []int
		for i := 0; i < 4; i++ {
			got = append(got, call(orders))
		}
		if fmt.Sprint(got) != "[200 200 200 429]" {
			t.Fatalf("orders: statuses %v, want [200 200 200 429]", got)
		}
		// notifications has its own counter: not limited, but denied by authz.
		if code := call(notifications); code != http.StatusForbidden {
			t.Fatalf("notifications: status %d, want 403 (own counter, then authz)", code)
		}
	})

	t.Run("permissive allows plaintext without identity and strips a forged header", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.inbound["orders"]+"/checkout", nil)
		req.Header.Set("X-Forwarded-Client-Cert", "URI="+spiffe("admin"))
		code, a := do(t, plain, req)
		if code != http.StatusOK || len(a.Hops) != 2 || a.Hops[0].VerifiedCaller != "" || a.Hops[1].VerifiedCaller != spiffe("orders") {
			t.Fatalf("status %d hops %+v", code, a.Hops)
		}
		// TLS without a client certificate is accepted too, without identity.
		conf := orders.ClientTLS(spiffe("orders"))
		conf.GetClientCertificate = nil
		req, _ = http.NewRequest(http.MethodGet, "https://"+m.inbound["orders"]+"/checkout", nil)
		code, a = do(t, client(conf, false), req)
		if code != http.StatusOK || len(a.Hops) != 2 || a.Hops[0].VerifiedCaller != "" {
			t.Fatalf("tls without cert: status %d hops %+v", code, a.Hops)
		}
	})

	t.Run("a certificate from another trust domain is refused", func(t *testing.T) {
		evilDir := filepath.Join(t.TempDir(), "evil")
		if _, err := mesh.InitCA(filepath.Join(evilDir, "ca"), "evil.test"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := mesh.Issue(mesh.IssueOptions{CADir: filepath.Join(evilDir, "ca"), OutDir: evilDir, Service: "orders"}); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(evilDir, mesh.CertFile), filepath.Join(evilDir, mesh.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		// GetClientCertificate sends the certificate even though the server
		// does not list its issuer among the acceptable CAs.
		conf := &tls.Config{InsecureSkipVerify: true, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		}}
		for _, svc := range []string{"payments", "orders"} { // strict and permissive
			if _, err := client(conf, false).Get("https://" + m.inbound[svc] + "/checkout"); err == nil {
				t.Errorf("%s inbound accepted a certificate of trust domain evil.test", svc)
			}
		}
	})

	t.Run("outbound refuses a peer with the wrong identity", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+m.outbound["orders"]+"/charge", nil)
		req.Host = "imposter"
		code, _ := do(t, plain, req)
		if code < 500 {
			t.Fatalf("call to a sidecar presenting notifications' identity as payments: status %d, want 5xx", code)
		}
		req, _ = http.NewRequest(http.MethodPost, "http://"+m.outbound["orders"]+"/charge", nil)
		req.Host = "payments"
		if code, a := do(t, plain, req); code != http.StatusOK || a.Hops[0].VerifiedCaller != spiffe("orders") {
			t.Fatalf("call to payments: status %d answer %+v", code, a)
		}
	})

	t.Run("connections between sidecars are reused", func(t *testing.T) {
		before := connections(t, m.gateways["payments"], mesh.InboundListener)
		const n = 60
		var wg sync.WaitGroup
		var bad atomic.Int64
		for i := 0; i < 4; i++ {
			wg.Go(func() {
				for j := 0; j < n/4; j++ {
					resp, err := plain.Get("http://" + m.edge + "/orders/checkout")
					if err != nil {
						bad.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						bad.Add(1)
					}
				}
			})
		}
		wg.Wait()
		total := connections(t, m.gateways["payments"], mesh.InboundListener)
		conns := total - before
		t.Logf("%d requests through orders' outbound opened %v connections (handshakes) to payments' inbound; %v since start", n, conns, total)
		if bad.Load() > 0 || conns > 4 || total < 1 {
			t.Fatalf("%d failed requests; %v new connections for %d requests (want at most 4), %v in total (want > 0)", bad.Load(), conns, n, total)
		}
		edgeConns := connections(t, m.gateways["orders"], mesh.InboundListener)
		if edgeConns < 1 || edgeConns > 12 {
			t.Fatalf("orders' inbound accepted %v connections over the whole test, want 1..12 (pooled edge connections plus direct test calls)", edgeConns)
		}
	})

	t.Run("certificate rotation under load loses no request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
		defer cancel()
		var serials sync.Map
		conf := orders.ClientTLS(spiffe("payments"))
		verify := conf.VerifyConnection
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			serials.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
			return verify(cs)
		}
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		record := func(code int, err error) {
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d", code)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			ok.Add(1)
		}
		var wg sync.WaitGroup
		// Through the whole chain, on pooled connections.
		for i := 0; i < 2; i++ {
			wg.Go(func() {
				for ctx.Err() == nil {
					resp, err := plain.Get("http://" + m.edge + "/orders/checkout")
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						record(resp.StatusCode, nil)
						continue
					}
					record(0, err)
				}
			})
		}
		// Straight to payments' inbound, one handshake per request.
		direct := client(conf, false)
		for i := 0; i < 2; i++ {
			wg.Go(func() {
				for ctx.Err() == nil {
					resp, err := direct.Post("https://"+m.inbound["payments"]+"/charge", "application/json", nil)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						record(resp.StatusCode, nil)
						continue
					}
					record(0, err)
				}
			})
		}
		tick := time.NewTicker(time.Second)
		for i := 0; i < 3; i++ {
			<-tick.C
			for _, s := range []string{"edge", "orders", "payments", "notifications"} {
				m.issue(t, s)
			}
		}
		tick.Stop()
		wg.Wait()
		n := 0
		serials.Range(func(any, any) bool { n++; return true })
		t.Logf("%d requests during 3 rotations, %d payments certificates seen", ok.Load(), n)
		if failed.Load() > 0 {
			t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
		}
		if ok.Load() < 20 || n < 3 {
			t.Fatalf("%d requests, %d distinct payments certificates: rotation not exercised", ok.Load(), n)
		}
	})

	t.Run("registry file change applies without restart", func(t *testing.T) {
		call := func() int {
			req, _ := http.NewRequest(http.MethodPost, "http://"+m.outbound["orders"]+"/charge", nil)
			req.Host = "billing"
			code, _ := do(t, plain, req)
			return code
		}
		if code := call(); code != http.StatusNotFound {
			t.Fatalf("unknown service billing: status %d, want 404", code)
		}
		reg, err := os.ReadFile(filepath.Join(m.dir, "services.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		reg = append(reg, fmt.Sprintf("  - {name: billing, spiffe_id: %q, endpoints: [%q]}\n", spiffe("payments"), m.inbound["payments"])...)
		writeFile(t, filepath.Join(m.dir, "services.yaml"), string(reg))
		deadline := time.Now().Add(15 * time.Second)
		for call() != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatal("billing still not routed 15s after the registry file changed")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
