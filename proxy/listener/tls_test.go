package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// handshake dials the listener with conf and returns the server's leaf CN.
func handshake(t testing.TB, addr string, conf *tls.Config) (string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if len(conf.Certificates) > 0 || conf.GetClientCertificate != nil {
		// TLS 1.3 client certificate errors arrive after the handshake.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			return "", err
		}
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

func quicHandshake(t testing.TB, addr string, conf *tls.Config) (string, error) {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"h3"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, addr, conf, nil)
	if err != nil {
		return "", err
	}
	defer c.CloseWithError(0, "")
	if len(conf.Certificates) > 0 || conf.GetClientCertificate != nil {
		// The server rejects a TLS 1.3 client certificate after the
		// client considers the handshake complete.
		select {
		case <-c.Context().Done():
			return "", context.Cause(c.Context())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return c.ConnectionState().TLS.PeerCertificates[0].Subject.CommonName, nil
}

func TestSNISelection(t *testing.T) {
	ca := newCA(t, "ca")
	dir := t.TempDir()
	certs := []config.Cert{
		ca.issue(t, "default", []string{"a.test"}, false, "").write(t, dir, "a"),
		ca.issue(t, "exact", []string{"b.test"}, false, "").write(t, dir, "b"),
		ca.issue(t, "wildcard", []string{"*.c.test"}, false, "").write(t, dir, "c"),
		// Configured names override the certificate's own.
		ca.issue(t, "configured", []string{"ignored.test"}, false, "").write(t, dir, "d"),
	}
	certs[3].SNI = []string{"D.test"}
	l := start(t, config.Listener{TLS: &config.ListenerTLS{Certs: certs}, HTTP3: h3Config()}, testLimits(), okHandler, Options{})
	tests := []struct{ sni, want string }{
		{"a.test", "default"},
		{"b.test", "exact"},
		{"B.TEST.", "exact"},
		{"x.c.test", "wildcard"},
		{"c.test", "default"},
		{"y.x.c.test", "default"},
		{"d.test", "configured"},
		{"ignored.test", "default"},
		{"unknown.test", "default"},
		{"", "default"},
	}
	for _, tt := range tests {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			conf := &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true}
			got, err := handshake(t, l.Addr().String(), conf)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("tcp: got cert %q, want %q", got, tt.want)
			}
			if got, err = quicHandshake(t, l.H3Addr().String(), conf); err != nil || got != tt.want {
				t.Fatalf("quic: got cert %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestTLSVersionsAndALPN(t *testing.T) {
	tests := []struct {
		name      string
		min       string
		http2     bool
		clientMax uint16
		wantErr   bool
		wantProto string
	}{
		{"1.2 accepts 1.2", "1.2", true, tls.VersionTLS12, false, "h2"},
		{"1.3 refuses 1.2", "1.3", true, tls.VersionTLS12, true, ""},
		{"1.3 accepts 1.3", "1.3", true, tls.VersionTLS13, false, "h2"},
		{"http2 off", "1.2", false, tls.VersionTLS13, false, "http/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startTLS(t, config.Listener{HTTP2: &tt.http2, TLS: &config.ListenerTLS{MinVersion: tt.min}}, okHandler, Options{})
			conf := s.clientTLS()
			conf.MaxVersion = tt.clientMax
			conf.NextProtos = []string{"h2", "http/1.1"}
			c, err := tls.Dial("tcp", s.Addr().String(), conf)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want failure")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if p := c.ConnectionState().NegotiatedProtocol; p != tt.wantProto {
				t.Fatalf("ALPN %q, want %q", p, tt.wantProto)
			}
		})
	}
}

func TestClientAuth(t *testing.T) {
	clientCA := newCA(t, "client-ca")
	otherCA := newCA(t, "other-ca")
	good := clientCA.issue(t, "good-client", nil, true, "spiffe://test/ns/default/sa/good")
	stranger := otherCA.issue(t, "stranger", nil, true, "")
	caDir := t.TempDir()
	caFile := filepath.Join(caDir, "clients.pem")
	writeFile(t, caFile, clientCA.pem)

	type peer struct {
		status int
		cn     string
	}
	tests := []struct {
		mode   string
		client *tls.Certificate
		want   peer // status 0 = handshake must fail
	}{
		{"none", &good.tls, peer{200, ""}},
		{"request", nil, peer{200, ""}},
		{"request", &stranger.tls, peer{200, "stranger"}},
		{"require", nil, peer{}},
		{"require", &stranger.tls, peer{}},
		{"require", &good.tls, peer{200, "good-client"}},
		{"optional", nil, peer{200, ""}},
		{"optional", &stranger.tls, peer{}},
		{"optional", &good.tls, peer{200, "good-client"}},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
		}
	})
	servers := map[string]*tlsServer{}
	for _, mode := range []string{"none", "request", "require", "optional"} {
		servers[mode] = startTLS(t, config.Listener{TLS: &config.ListenerTLS{ClientAuth: mode, ClientCAFile: caFile}, HTTP3: h3Config()}, h, Options{})
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/cert=%v", tt.mode, tt.client != nil)
		if tt.client == &stranger.tls {
			name = tt.mode + "/stranger"
		}
		t.Run(name, func(t *testing.T) {
			s := servers[tt.mode]
			conf := s.clientTLS()
			if tt.client != nil {
				// Send the certificate even when the server's CA list does
				// not name its issuer.
				conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.client, nil }
			}
			for proto, c := range map[string]*http.Client{"h2": h2Client(t, conf, true), "h3": h3Client(t, conf)} {
				resp, err := c.Get(s.url("/"))
				if tt.want.status == 0 {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("%s: request succeeded with status %d, want handshake failure", proto, resp.StatusCode)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", proto, err)
				}
				b := readAll(t, resp)
				if resp.StatusCode != tt.want.status || b != tt.want.cn {
					t.Fatalf("%s: got %d %q, want %d %q", proto, resp.StatusCode, b, tt.want.status, tt.want.cn)
				}
			}
		})
	}
}

// TestMeshHooks supplies certificate, trust bundle and peer check through
// Options, as the sidecar does, and rotates the trust bundle.
func TestMeshHooks(t *testing.T) {
	serverCA := newCA(t, "mesh-a")
	clientCA := newCA(t, "mesh-b")
	serverCert := serverCA.issue(t, "svc", []string{"localhost"}, false, "spiffe://mesh/ns/default/sa/svc")
	allowed := clientCA.issue(t, "caller", nil, true, "spiffe://mesh/ns/default/sa/caller")
	denied := clientCA.issue(t, "intruder", nil, true, "spiffe://mesh/ns/default/sa/intruder")

	var bundle atomic.Pointer[x509.CertPool]
	bundle.Store(x509.NewCertPool()) // trusts nobody yet
	opts := Options{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serverCert.tls, nil },
		ClientCAs:      bundle.Load,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].URIs[0].String() != "spiffe://mesh/ns/default/sa/caller" {
				return errors.New("peer not allowed")
			}
			return nil
		},
	}
	l := start(t, config.Listener{Role: "inbound", TLS: &config.ListenerTLS{ClientAuth: "require"}, HTTP3: h3Config()}, testLimits(), okHandler, opts)
	conf := func(c leaf) *tls.Config {
		return &tls.Config{RootCAs: serverCA.pool(), ServerName: "localhost", Certificates: []tls.Certificate{c.tls}}
	}
	if _, err := handshake(t, l.Addr().String(), conf(allowed)); err == nil {
		t.Fatal("handshake succeeded before the bundle trusts the client CA")
	}
	bundle.Store(clientCA.pool())
	for _, tc := range []struct {
		name string
		c    leaf
		ok   bool
	}{{"allowed", allowed, true}, {"denied", denied, false}} {
		_, err := handshake(t, l.Addr().String(), conf(tc.c))
		if (err == nil) != tc.ok {
			t.Errorf("tcp %s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		_, err = quicHandshake(t, l.H3Addr().String(), conf(tc.c))
		if (err == nil) != tc.ok {
			t.Errorf("quic %s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestCertRotation rewrites the certificate files while clients keep
// opening new connections: no handshake may fail, and new handshakes must
// soon see the new certificate, over TCP and QUIC.
func TestCertRotation(t *testing.T) {
	ca := newCA(t, "ca")
	dir := t.TempDir()
	first := ca.issue(t, "gen-0", []string{"localhost"}, false, "")
	cert := first.write(t, dir, "srv")
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := start(t, config.Listener{Name: "rot", TLS: &config.ListenerTLS{Certs: []config.Cert{cert}}, HTTP3: h3Config()},
		testLimits(), okHandler, Options{CertCheckInterval: 10 * time.Millisecond, Metrics: m})
	conf := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}

	var (
		stop     atomic.Bool
		failures atomic.Int64
		requests atomic.Int64
		wg       sync.WaitGroup
	)
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				tr := &http.Transport{TLSClientConfig: conf.Clone(), DisableKeepAlives: true}
				resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + l.Addr().String())
				if err != nil {
					failures.Add(1)
					t.Errorf("request during rotation: %v", err)
				} else {
					resp.Body.Close()
				}
				tr.CloseIdleConnections()
				requests.Add(1)
			}
		})
	}
	for gen := 1; gen <= 5; gen++ {
		name := fmt.Sprintf("gen-%d", gen)
		next := ca.issue(t, name, []string{"localhost"}, false, "")
		if gen%2 == 0 {
			next.write(t, dir, "srv") // atomic rename
		} else {
			// In place, key first: between the two writes the pair does not
			// match and the old certificate must stay in use.
			if err := os.WriteFile(cert.KeyFile, next.keyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond)
			if err := os.WriteFile(cert.CertFile, next.certPEM, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "tcp serves "+name, 5*time.Second, func() bool {
			got, err := handshake(t, l.Addr().String(), conf)
			return err == nil && got == name
		})
		waitFor(t, "quic serves "+name, 5*time.Second, func() bool {
			got, err := quicHandshake(t, l.H3Addr().String(), conf)
			return err == nil && got == name
		})
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 || requests.Load() == 0 {
		t.Fatalf("%d of %d requests failed during rotation", failures.Load(), requests.Load())
	}
	if v := metricValue(t, m.reloads.WithLabelValues("rot", "ok")); v < 5 {
		t.Fatalf("reload ok counter = %v, want >= 5", v)
	}
}

func TestBrokenRotationKeepsOldCert(t *testing.T) {
	ca := newCA(t, "ca")
	dir := t.TempDir()
	cert := ca.issue(t, "good", []string{"localhost"}, false, "").write(t, dir, "srv")
	s := start(t, config.Listener{TLS: &config.ListenerTLS{Certs: []config.Cert{cert}}}, testLimits(), okHandler,
		Options{CertCheckInterval: time.Millisecond})
	conf := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	writeFile(t, cert.CertFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	if err := s.ReloadCerts(); err == nil {
		t.Fatal("ReloadCerts of a broken file succeeded")
	}
	for range 3 {
		time.Sleep(2 * time.Millisecond)
		if got, err := handshake(t, s.Addr().String(), conf); err != nil || got != "good" {
			t.Fatalf("after broken rotation: cert %q err %v, want the old one", got, err)
		}
	}
}

func TestClientCARotation(t *testing.T) {
	oldCA, newCA_ := newCA(t, "old"), newCA(t, "new")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, oldCA.pem)
	s := startTLS(t, config.Listener{TLS: &config.ListenerTLS{ClientAuth: "require", ClientCAFile: caFile}},
		okHandler, Options{CertCheckInterval: 10 * time.Millisecond})
	conf := s.clientTLS()
	conf.Certificates = []tls.Certificate{newCA_.issue(t, "client", nil, true, "").tls}
	if _, err := handshake(t, s.Addr().String(), conf); err == nil {
		t.Fatal("client of the new CA accepted before rotation")
	}
	writeFile(t, caFile, newCA_.pem)
	waitFor(t, "new client CA in use", 5*time.Second, func() bool {
		_, err := handshake(t, s.Addr().String(), conf)
		return err == nil
	})
}

func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo", "tls")
	cert := config.Cert{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	l := start(t, config.Listener{TLS: &config.ListenerTLS{Certs: []config.Cert{cert}, SelfSigned: true}}, testLimits(), okHandler, Options{})
	pemBytes, err := os.ReadFile(cert.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cert.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v, want 0600", err, fi.Mode())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	for _, name := range []string{"localhost", "127.0.0.1"} {
		c := h2Client(t, &tls.Config{RootCAs: pool, ServerName: name}, true)
		resp, err := c.Get("https://" + l.Addr().String())
		if err != nil {
			t.Fatalf("verify self-signed as %s: %v", name, err)
		}
		resp.Body.Close()
	}
	// Existing files are kept.
	made, err := EnsureSelfSigned(cert.CertFile, cert.KeyFile)
	if err != nil || made {
		t.Fatalf("EnsureSelfSigned on existing files: made=%v err=%v", made, err)
	}
	again, _ := os.ReadFile(cert.CertFile)
	if string(again) != string(pemBytes) {
		t.Fatal("existing certificate was overwritten")
	}
}
