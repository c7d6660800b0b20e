package mesh

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// mTLS modes of an inbound listener.
const (
	// ModeStrict requires a client certificate with a SPIFFE ID of the trust domain.
	ModeStrict = "strict"
	// ModePermissive verifies a client certificate when one is presented and
	// accepts clients without one (they have no identity).
	ModePermissive = "permissive"
)

// ErrPeerID is wrapped by handshake errors about the peer's SPIFFE ID.
var ErrPeerID = errors.New("mesh: peer identity refused")

// alpn is what the mesh server offers; h2 first so sidecar pairs multiplex.
var alpn = []string{"h2", "http/1.1"}

// ServerTLS returns the TLS config of an inbound listener. Each handshake
// picks the current certificate and verifies the client against the current
// bundle (GetConfigForClient), so rotations apply to new connections at once.
// In strict mode a client certificate is required; in permissive mode it is
// verified when presented. Either way a presented certificate must chain to
// the bundle, be meant for client auth, and carry exactly one SPIFFE ID of
// this identity's trust domain. Session tickets are off, so every connection
// proves its certificate. Any other mode is treated as strict.
func (s *Source) ServerTLS(mode string) *tls.Config {
	i := 0
	if mode == ModePermissive {
		i = 1
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: alpn,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().servers[i], nil
		},
	}
}

func (s *Source) serverConfig(m *material, auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		NextProtos:             alpn,
		Certificates:           []tls.Certificate{*m.cert},
		ClientAuth:             auth,
		ClientCAs:              m.pool,
		SessionTicketsDisabled: true,
		VerifyConnection:       s.VerifyClient,
	}
}

// ClientTLS returns the TLS config for connecting to a peer sidecar. It
// presents the current certificate and verifies the server against the
// current bundle; the server must present exactly expectedID (a SPIFFE ID,
// not a host name). With expectedID empty any SPIFFE ID of this identity's
// trust domain is accepted. ALPN is left to the transport that uses it.
func (s *Source) ClientTLS(expectedID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Go's hostname verification is replaced by VerifyConnection below,
		// which checks the chain against the current bundle and the SPIFFE ID.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.clientHS.Add(1)
			return s.verifyServer(cs, expectedID)
		},
	}
}

func (s *Source) verifyServer(cs tls.ConnectionState, expected string) error {
	m := s.cur.Load()
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: server presented no certificate", ErrPeerID)
	}
	leaf := cs.PeerCertificates[0]
	var inter *x509.CertPool
	if len(cs.PeerCertificates) > 1 {
		inter = x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         m.pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("%w: %v", ErrPeerID, err)
	}
	id, err := IDFromCert(leaf)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPeerID, err)
	}
	if expected != "" {
		if id.String() != expected {
			return fmt.Errorf("%w: server is %s, want %s", ErrPeerID, id, expected)
		}
		return nil
	}
	if id.TrustDomain != m.id.TrustDomain {
		return fmt.Errorf("%w: %s is not in trust domain %q", ErrPeerID, id, m.id.TrustDomain)
	}
	return nil
}

// PeerID returns the SPIFFE ID of a connection's client certificate, or ""
// when there is none. It only trusts certificates the TLS stack verified
// (cs.VerifiedChains non-empty), as ServerTLS's configs do; an unverified
// certificate (client_auth "request") yields "".
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	id, err := IDFromCert(cs.VerifiedChains[0][0])
	if err != nil {
		return ""
	}
	return id.String()
}

// GetCertificate returns the current certificate (a tls.Config hook).
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// ClientCAs returns the current trust bundle; the pointer changes only when
// the bundle is reloaded.
func (s *Source) ClientCAs() *x509.CertPool { return s.cur.Load().pool }

// VerifyClient is a server-side tls.Config.VerifyConnection: after the TLS
// stack verified the client chain against ClientCAs, it requires a client
// certificate, when present, to carry one SPIFFE ID of this identity's trust
// domain. It counts the handshake in Stats.ServerHandshakes.
func (s *Source) VerifyClient(cs tls.ConnectionState) error {
	s.serverHS.Add(1)
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	id, err := IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPeerID, err)
	}
	if td := s.cur.Load().id.TrustDomain; id.TrustDomain != td {
		return fmt.Errorf("%w: %s is not in trust domain %q", ErrPeerID, id, td)
	}
	return nil
}
