package upstream

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/wasmgate/wasmgate/proxy/config"
)

const backendID = "spiffe://test.local/ns/default/sa/backend"

// pki is a test CA with a server certificate (localhost, 127.0.0.1 and a
// SPIFFE ID) and a client certificate, written to files.
type pki struct {
	caPool                        *x509.CertPool
	server, client                tls.Certificate
	caFile                        string
	clientCertFile, clientKeyFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{caPool: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem")}
	p.caPool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, dns []string, ips []net.IP, uri string) (tls.Certificate, []byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: dns, IPAddresses: ips,
		}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, keyDER
	}
	p.server, _, _ = issue(2, x509.ExtKeyUsageServerAuth, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, backendID)
	var certDER, keyDER []byte
	p.client, certDER, keyDER = issue(3, x509.ExtKeyUsageClientAuth, nil, nil, "spiffe://test.local/ns/default/sa/proxy")
	p.clientCertFile, p.clientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writePEM(t, p.clientCertFile, "CERTIFICATE", certDER)
	writePEM(t, p.clientKeyFile, "PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// protoHandler answers with the protocol and the client certificate's URI.
func protoHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Proto", r.Proto)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
		w.Header().Set("X-Peer", r.TLS.PeerCertificates[0].URIs[0].String())
	}
}

func TestProtocolsAndTLS(t *testing.T) {
	p := newPKI(t)

	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(protoHandler))
	tlsSrv.EnableHTTP2 = true
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}}
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	tlsAddr := tlsSrv.Listener.Addr().String()
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)

	mtlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(protoHandler))
	mtlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.caPool}
	mtlsSrv.StartTLS()
	defer mtlsSrv.Close()

	h2cLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2cSrv := &http.Server{Handler: http.HandlerFunc(protoHandler), Protocols: new(http.Protocols)}
	h2cSrv.Protocols.SetUnencryptedHTTP2(true)
	go h2cSrv.Serve(h2cLn)
	defer h2cSrv.Close()

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h3Srv := &http3.Server{Handler: http.HandlerFunc(protoHandler), TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{p.server}})}
	go h3Srv.Serve(udp)
	defer h3Srv.Close()

	caTLS := &config.UpstreamTLS{CAFile: p.caFile}
	tests := []struct {
		name      string
		cl        config.Cluster
		hook      *tls.Config
		wantProto string
		wantPeer  string
		wantErr   error
		h2Down    bool // the downstream request arrived over HTTP/2
	}{
		{name: "http1 over tls", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: caTLS}, wantProto: "HTTP/1.1"},
		{name: "h2 over tls", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: caTLS, Protocol: ProtoH2}, wantProto: "HTTP/2.0"},
		{name: "dns name verified as server name", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: "localhost:" + tlsPort}}, TLS: caTLS}, wantProto: "HTTP/1.1"},
		{name: "wrong server name fails to connect", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: &config.UpstreamTLS{CAFile: p.caFile, ServerName: "other.example"}}, wantErr: ErrConnect},
		{name: "unknown CA fails to connect", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: &config.UpstreamTLS{ServerName: "localhost"}}, wantErr: ErrConnect},
		{name: "spiffe id matches", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: &config.UpstreamTLS{CAFile: p.caFile, SPIFFEID: backendID, ServerName: "not-checked"}}, wantProto: "HTTP/1.1"},
		{name: "spiffe id mismatch", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: &config.UpstreamTLS{CAFile: p.caFile, SPIFFEID: "spiffe://test.local/ns/default/sa/other"}}, wantErr: ErrConnect},
		{name: "mtls client certificate", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: mtlsSrv.Listener.Addr().String()}}, TLS: &config.UpstreamTLS{CAFile: p.caFile, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile}},
			wantProto: "HTTP/1.1", wantPeer: "spiffe://test.local/ns/default/sa/proxy"},
		{name: "tls hook without tls block", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: mtlsSrv.Listener.Addr().String()}}},
			hook: &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.client}}, wantProto: "HTTP/1.1", wantPeer: "spiffe://test.local/ns/default/sa/proxy"},
		{name: "h2c", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: h2cLn.Addr().String()}}, Protocol: ProtoH2C}, wantProto: "HTTP/2.0"},
		{name: "h3", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: udp.LocalAddr().String()}}, TLS: caTLS, Protocol: ProtoH3}, wantProto: "HTTP/3.0"},
		{name: "auto over tls, HTTP/1 downstream", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: caTLS, Protocol: ProtoAuto}, wantProto: "HTTP/1.1"},
		{name: "auto over tls, HTTP/2 downstream", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: tlsAddr}}, TLS: caTLS, Protocol: ProtoAuto}, h2Down: true, wantProto: "HTTP/2.0"},
		{name: "auto cleartext, HTTP/2 downstream", cl: config.Cluster{Endpoints: []config.Endpoint{{Address: h2cLn.Addr().String()}}, Protocol: ProtoAuto}, h2Down: true, wantProto: "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cl.Name = "c"
			opts := Options{}
			if tt.hook != nil {
				opts.TLSConfig = func(config.Cluster) (*tls.Config, error) { return tt.hook, nil }
			}
			c := newSet(t, opts, tt.cl).Cluster("c")
			req := newReq(t, "GET", "/")
			if tt.h2Down {
				req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
			}
			resp, err := c.RoundTrip(req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Proto"); got != tt.wantProto {
				t.Fatalf("backend saw %q, want %q", got, tt.wantProto)
			}
			if got := resp.Header.Get("X-Peer"); got != tt.wantPeer {
				t.Fatalf("backend saw peer %q, want %q", got, tt.wantPeer)
			}
		})
	}
}

func TestNewSetErrors(t *testing.T) {
	tests := []struct {
		name string
		cl   config.Cluster
	}{
		{name: "missing ca file", cl: config.Cluster{Name: "c", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}, TLS: &config.UpstreamTLS{CAFile: "/nonexistent/ca.pem"}}},
		{name: "h2c with tls", cl: config.Cluster{Name: "c", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}, Protocol: ProtoH2C, TLS: &config.UpstreamTLS{}}},
		{name: "bad address", cl: config.Cluster{Name: "c", Endpoints: []config.Endpoint{{Address: "nohost"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Config{Clusters: []config.Cluster{tt.cl}}
			cfg.ApplyDefaults()
			s, err := NewSet(context.Background(), cfg.Clusters, Options{})
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("NewSet succeeded")
			}
		})
	}
}

func TestUpgradePassesThrough(t *testing.T) {
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = conn.Write([]byte("echo: " + line))
	})
	s := newSet(t, Options{}, cluster("c", b.addr()))
	req := newReq(t, "GET", "/ws")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := s.Cluster("c").RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, writable body %v", resp.StatusCode, ok)
	}
	if _, err := rw.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(rw).ReadString('\n')
	if line != "echo: ping\n" {
		t.Fatalf("read %q", line)
	}
	rw.Close()
	if s.Status()[0].ActiveRequests != 0 {
		t.Fatal("closing the upgraded body did not end the call")
	}
}

func TestStatusFor(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{ErrOverloaded, 503},
		{ErrNoHealthyEndpoint, 503},
		{errTryTimeout, 504},
		{context.DeadlineExceeded, 504},
		{ErrConnect, 502},
		{ErrReset, 502},
		{context.Canceled, 499},
		{errors.New("other"), 502},
	}
	for _, tt := range tests {
		if got := StatusFor(tt.err); got != tt.want {
			t.Errorf("StatusFor(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
