package config

import "time"

// Listener is one socket the proxy serves.
type Listener struct {
	// Name identifies the listener in logs, metrics and route.listeners.
	Name string `yaml:"name"`
	// Address is host:port to bind.
	Address string `yaml:"address"`
	// TLS enables TLS termination on the listener.
	TLS *ListenerTLS `yaml:"tls"`
	// HTTP2 serves h2 over TLS (ALPN). Default true.
	HTTP2 *bool `yaml:"http2"`
	// H2C serves cleartext HTTP/2 (prior knowledge and upgrade). Default false.
	H2C bool `yaml:"h2c"`
	// HTTP3 serves HTTP/3 over QUIC on the same port (UDP). Needs tls.
	HTTP3 *HTTP3 `yaml:"http3"`
	// RedirectHTTPS answers every request with a redirect to https (port of
	// the first TLS listener) instead of routing.
	RedirectHTTPS bool `yaml:"redirect_https"`
	// Role is public (edge, default), inbound or outbound (sidecar).
	Role string `yaml:"role"`
	// Upstream is the cluster a sidecar inbound listener forwards to when no
	// route names this listener (the local app).
	Upstream string `yaml:"upstream"`
}

// ListenerTLS configures TLS termination.
type ListenerTLS struct {
	// Certs are served by SNI; the first is the default.
	Certs []Cert `yaml:"certs"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ClientAuth is none (default), request, require (mTLS strict) or
	// optional (mTLS permissive: verified if presented).
	ClientAuth string `yaml:"client_auth"`
	// ClientCAFile is the PEM bundle that verifies client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowPlaintext also accepts plaintext HTTP on the same port (sidecar
	// permissive mode).
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// TrustDomain makes this an mTLS mesh listener (set by proxy/mesh for a
	// sidecar's inbound): client certificates must carry a SPIFFE ID of this
	// trust domain, certs[0] must be this service's SPIFFE certificate and
	// client_ca_file the trust bundle; both are reloaded when rotated.
	TrustDomain string `yaml:"trust_domain"`
	// SelfSigned generates a self-signed certificate into the first cert's
	// files when they are missing (demo use).
	SelfSigned bool `yaml:"self_signed"`
}

// Cert is one certificate and key, chosen by SNI.
type Cert struct {
	// CertFile is the PEM certificate chain; reloaded when it changes.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key; reloaded when it changes.
	KeyFile string `yaml:"key_file"`
	// SNI names this cert serves ("api.example.com", "*.example.com");
	// empty means the names in the certificate.
	SNI []string `yaml:"sni"`
}

// HTTP3 configures QUIC.
type HTTP3 struct {
	// Enabled turns HTTP/3 on. Default true when the section is present.
	Enabled *bool `yaml:"enabled"`
	// MaxStreams is the max concurrent bidirectional streams per connection. Default 100.
	MaxStreams int64 `yaml:"max_streams"`
	// IdleTimeout closes idle QUIC connections. Default 30s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Allow0RTT accepts 0-RTT for safe methods only. Default false.
	Allow0RTT bool `yaml:"allow_0rtt"`
	// AltSvcMaxAge is the ma= of the Alt-Svc header. Default 24h.
	AltSvcMaxAge time.Duration `yaml:"alt_svc_max_age"`
}
