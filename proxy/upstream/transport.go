package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Protocols accepted in config.Cluster.Protocol.
const (
	ProtoHTTP1 = "http1"
	ProtoH2    = "h2"
	ProtoH2C   = "h2c"
	ProtoH3    = "h3"
	// ProtoAuto follows the downstream request: HTTP/1 requests go over
	// HTTP/1.1, HTTP/2 and HTTP/3 ones over h2 (h2c without TLS).
	ProtoAuto = "auto"
)

const (
	idleConnTimeout = 90 * time.Second
	tcpKeepAlive    = 30 * time.Second
)

// dial connects to addr within the connect timeout, marking failures as
// connect failures.
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout, KeepAlive: tcpKeepAlive}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	c.m.connOpened.Inc()
	return conn, nil
}

// tlsDialer returns a DialTLSContext that presents each endpoint's own
// server name (its DNS name) unless cfg fixes one.
func (c *Cluster) tlsDialer(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := c.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conf := cfg
		if conf.ServerName == "" {
			conf = cfg.Clone()
			conf.ServerName = c.sniFor(addr)
		}
		hctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		defer cancel()
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, &dialError{fmt.Errorf("tls handshake: %w", err)}
		}
		return tc, nil
	}
}

// sniFor returns the server name for the endpoint at addr.
func (c *Cluster) sniFor(addr string) string {
	for _, e := range c.tab.Load().all {
		if e.addr == addr {
			return e.serverName()
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// buildTransport sets c.rt, c.closeRT and c.scheme for the cluster's
// protocol; tlsCfg is nil for plaintext.
func (c *Cluster) buildTransport(tlsCfg *tls.Config) error {
	c.scheme = "http"
	if tlsCfg != nil {
		c.scheme = "https"
		tlsCfg = tlsCfg.Clone()
		if tlsCfg.MinVersion == 0 {
			tlsCfg.MinVersion = tls.VersionTLS12
		}
	}
	proto := c.cfg.Protocol
	if proto == ProtoH3 {
		if tlsCfg == nil {
			return errors.New("protocol h3 needs tls")
		}
		c.rt, c.closeRT = c.newH3Transport(tlsCfg)
		return nil
	}
	if proto == ProtoAuto {
		h1tr, err := c.newTransport(ProtoHTTP1, tlsCfg)
		if err != nil {
			return err
		}
		h1 := c.newH1(h1tr)
		h2proto := ProtoH2
		if tlsCfg == nil {
			h2proto = ProtoH2C
		}
		h2, err := c.newTransport(h2proto, tlsCfg)
		if err != nil {
			return err
		}
		c.rt = byDownstream{h1: h1, h2: h2}
		c.closeRT = func() { h1.close(); h2.CloseIdleConnections() }
		return nil
	}
	tr, err := c.newTransport(proto, tlsCfg)
	if err != nil {
		return err
	}
	if proto == ProtoHTTP1 {
		h1 := c.newH1(tr)
		c.rt, c.closeRT = h1, h1.close
		return nil
	}
	c.rt, c.closeRT = tr, tr.CloseIdleConnections
	return nil
}

// newH1 puts the direct HTTP/1.1 path in front of tr, dialing as tr does.
func (c *Cluster) newH1(tr *http.Transport) *h1Client {
	dial := tr.DialContext
	if tr.DialTLSContext != nil {
		dial = tr.DialTLSContext
	}
	h := newH1Client(dial, tr, c.cfg.MaxIdleConns)
	h.onStale = c.m.connStale.Inc
	return h
}

// byDownstream sends HTTP/1 requests over h1 and HTTP/2 or HTTP/3 ones
// over h2 (cluster protocol auto). HTTP/1 to HTTP/1 keeps WebSocket
// upgrades working and, between Go proxies, costs less per request than
// HTTP/2; HTTP/2 to HTTP/2 keeps gRPC's trailers and streams.
type byDownstream struct{ h1, h2 http.RoundTripper }

func (t byDownstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor >= 2 {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

// newTransport builds an http.Transport for proto (not h3).
func (c *Cluster) newTransport(proto string, tlsCfg *tls.Config) (*http.Transport, error) {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
	}
	tr := &http.Transport{
		Proxy:                 nil, // never honour HTTP_PROXY for upstream traffic
		DialContext:           c.dial,
		MaxIdleConnsPerHost:   c.cfg.MaxIdleConns,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // a proxy passes Accept-Encoding through untouched
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	switch proto {
	case ProtoH2:
		if tlsCfg == nil {
			return nil, errors.New("protocol h2 needs tls (use h2c for cleartext)")
		}
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		tr.ForceAttemptHTTP2 = true
	case ProtoH2C:
		if tlsCfg != nil {
			return nil, errors.New("protocol h2c is cleartext; use h2 with tls")
		}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		if tlsCfg != nil {
			tlsCfg.NextProtos = []string{"http/1.1"}
		}
	}
	if tlsCfg != nil {
		tr.DialTLSContext = c.tlsDialer(tlsCfg)
	}
	return tr, nil
}

// buildTLS makes the client TLS config of an UpstreamTLS block. resolve maps
// file paths (relative to the config file).
func buildTLS(t *config.UpstreamTLS, resolve func(string) string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // operator's explicit choice, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(resolve(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(resolve(t.CertFile), resolve(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.SPIFFEID != "" && !t.InsecureSkipVerify {
		roots := cfg.RootCAs
		if roots == nil {
			sys, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("tls: system roots: %w", err)
			}
			roots = sys
		}
		// The chain is verified below against the roots; the identity is the
		// URI SAN, not a hostname, so the standard name check is replaced.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = VerifySPIFFE(roots, t.SPIFFEID)
	}
	return cfg, nil
}

// VerifySPIFFE returns a tls.Config.VerifyPeerCertificate that verifies the
// peer's chain against roots and requires want among its URI SANs. Use it
// with InsecureSkipVerify: true, which only turns off the hostname check
// this function replaces.
func VerifySPIFFE(roots *x509.CertPool, want string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("upstream: peer sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("upstream: parse peer certificate: %w", err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}); err != nil {
			return fmt.Errorf("upstream: verify peer certificate: %w", err)
		}
		for _, u := range certs[0].URIs {
			if u.String() == want {
				return nil
			}
		}
		return fmt.Errorf("upstream: peer identity is not %s", want)
	}
}
