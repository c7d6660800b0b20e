package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// tlsConfigs builds the TCP and QUIC tls.Configs of a listener. Both take
// certificates from the same source and get the client CA pool on every
// handshake, so rotated files apply to TCP and QUIC alike.
type tlsConfigs struct {
	base     *tls.Config // TCP: h2 and http/1.1
	quicBase *tls.Config // QUIC: TLS 1.3; http3 sets ALPN h3
	pool     func() *x509.CertPool
	empty    *x509.CertPool // used when pool returns nil: trusts nothing

	tcpCache  atomic.Pointer[poolConfig]
	quicCache atomic.Pointer[poolConfig]
}

// poolConfig is a config clone carrying one client CA pool.
type poolConfig struct {
	pool *x509.CertPool
	conf *tls.Config
}

func newTLSConfigs(t *config.ListenerTLS, http2 bool, src *certSource, opts Options) (*tlsConfigs, error) {
	tc := &tlsConfigs{empty: x509.NewCertPool()}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	switch t.MinVersion {
	case "", "1.2":
	case "1.3":
		base.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("listener: tls.min_version must be 1.2 or 1.3, got %q", t.MinVersion)
	}
	if http2 {
		base.NextProtos = []string{"h2", "http/1.1"}
	} else {
		base.NextProtos = []string{"http/1.1"}
	}
	switch {
	case opts.GetCertificate != nil:
		base.GetCertificate = opts.GetCertificate
	case src != nil:
		base.GetCertificate = src.getCertificate
	default:
		return nil, errors.New("listener: tls needs certs or Options.GetCertificate")
	}
	needCA := false
	switch t.ClientAuth {
	case "", "none":
		base.ClientAuth = tls.NoClientCert
	case "request":
		base.ClientAuth = tls.RequestClientCert
	case "require":
		base.ClientAuth = tls.RequireAndVerifyClientCert
		needCA = true
	case "optional":
		base.ClientAuth = tls.VerifyClientCertIfGiven
		needCA = true
	default:
		return nil, fmt.Errorf("listener: tls.client_auth must be none, request, require or optional, got %q", t.ClientAuth)
	}
	switch {
	case opts.ClientCAs != nil:
		tc.pool = opts.ClientCAs
	case src != nil && t.ClientCAFile != "":
		tc.pool = src.clientCAs
	case needCA:
		// Without a pool Go would verify client certificates against the
		// system roots: refuse instead.
		return nil, fmt.Errorf("listener: tls.client_auth %s needs client_ca_file or Options.ClientCAs", t.ClientAuth)
	}
	base.VerifyConnection = opts.VerifyConnection
	tc.base = base
	tc.quicBase = base.Clone()
	tc.quicBase.MinVersion = tls.VersionTLS13
	tc.quicBase.NextProtos = nil
	if tc.pool != nil {
		tc.base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return tc.withPool(&tc.tcpCache, tc.base), nil
		}
		tc.quicBase.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return tc.withPool(&tc.quicCache, tc.quicBase), nil
		}
	}
	return tc, nil
}

// withPool returns base with the current client CA pool, cloning only when
// the pool changed since the last handshake.
func (tc *tlsConfigs) withPool(cache *atomic.Pointer[poolConfig], base *tls.Config) *tls.Config {
	pool := tc.pool()
	if pool == nil {
		pool = tc.empty
	}
	if c := cache.Load(); c != nil && c.pool == pool {
		return c.conf
	}
	conf := base.Clone()
	conf.GetConfigForClient = nil
	conf.ClientCAs = pool
	cache.Store(&poolConfig{pool: pool, conf: conf})
	return conf
}
