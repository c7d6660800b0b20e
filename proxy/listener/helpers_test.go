package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leaf is an issued certificate in PEM and parsed form.
type leaf struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
	serial          int64
}

// issue makes a leaf for dns names (IPs are recognised), a client leaf when
// client is true, with optional SPIFFE URI SAN.
func (ca *testCA) issue(t testing.TB, cn string, names []string, client bool, uri string) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn := serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		serial:  sn,
	}
	l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// write stores the leaf as dir/name.crt and dir/name.key, replacing any
// previous files by rename (like cert-manager and kubelet do).
func (l leaf) write(t testing.TB, dir, name string) config.Cert {
	t.Helper()
	c := config.Cert{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	writeFile(t, c.KeyFile, l.keyPEM)
	writeFile(t, c.CertFile, l.certPEM)
	return c
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func testLimits() config.Limits {
	return config.Limits{MaxHeaderBytes: 16 << 10, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 30 * time.Second}
}

func boolPtr(b bool) *bool { return &b }

// h3Config is an HTTP/3 section with the defaults config applies.
func h3Config() *config.HTTP3 {
	return &config.HTTP3{Enabled: boolPtr(true), MaxStreams: 100, IdleTimeout: 30 * time.Second, AltSvcMaxAge: 24 * time.Hour}
}

// start builds and starts a listener on a random loopback port and shuts it
// down at the end of the test.
func start(t testing.TB, cfg config.Listener, limits config.Limits, h http.Handler, opts Options) *Listener {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Role == "" {
		cfg.Role = "public"
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	l, err := New(cfg, limits, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return l
}

// tlsServer is a started TLS listener with its CA, for client configs.
type tlsServer struct {
	*Listener
	ca  *testCA
	dir string
}

// startTLS starts a listener with one cert for localhost/127.0.0.1.
func startTLS(t testing.TB, cfg config.Listener, h http.Handler, opts Options) *tlsServer {
	t.Helper()
	ca := newCA(t, "test-ca")
	dir := t.TempDir()
	c := ca.issue(t, "default", []string{"localhost", "127.0.0.1"}, false, "").write(t, dir, "default")
	if cfg.TLS == nil {
		cfg.TLS = &config.ListenerTLS{}
	}
	cfg.TLS.Certs = append([]config.Cert{c}, cfg.TLS.Certs...)
	return &tlsServer{Listener: start(t, cfg, testLimits(), h, opts), ca: ca, dir: dir}
}

func (s *tlsServer) url(path string) string { return "https://" + s.Addr().String() + path }

// clientTLS trusts the server's CA.
func (s *tlsServer) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: s.ca.pool(), ServerName: "localhost"}
}

// h2Client speaks HTTP/2 (or 1.1 when h2 is false) over TLS.
func h2Client(t testing.TB, conf *tls.Config, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: conf.Clone(), ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 64}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h3Client speaks HTTP/3 with quic-go.
func h3Client(t testing.TB, conf *tls.Config) *http.Client {
	t.Helper()
	tr := &http3.Transport{TLSClientConfig: conf.Clone()}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// okHandler answers 200 with the protocol.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte(r.Proto))
})

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
