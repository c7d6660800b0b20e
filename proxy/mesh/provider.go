package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Provider hands out mesh TLS configs for listeners and clusters. It owns
// one Source per (cert, key, bundle) triple, started on first use and
// shared by every snapshot, so a config reload keeps the loaded identities
// and their handshake counters; Close stops them all.
//
// Its methods match the hooks of proxy/upstream and proxy/listener: they
// return (nil, nil) for a cluster or listener that is not a mesh one, so the
// caller falls back to its own TLS handling.
type Provider struct {
	log     *zap.Logger
	baseDir string
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	sources map[[3]string]*Source
	closed  bool
}

// NewProvider returns a Provider. Relative file paths are resolved against
// baseDir (the config file's directory; "" keeps them as they are).
func NewProvider(log *zap.Logger, baseDir string) *Provider {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Provider{log: log, baseDir: baseDir, ctx: ctx, cancel: cancel, sources: map[[3]string]*Source{}}
}

// Source returns the started Source for these files, loading it on first use.
func (p *Provider) Source(certFile, keyFile, bundleFile string) (*Source, error) {
	k := [3]string{p.abs(certFile), p.abs(keyFile), p.abs(bundleFile)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("mesh: provider is closed")
	}
	if s, ok := p.sources[k]; ok {
		return s, nil
	}
	s, err := NewSource(SourceOptions{CertFile: k[0], KeyFile: k[1], BundleFile: k[2], Logger: p.log})
	if err != nil {
		return nil, err
	}
	if err := s.Start(p.ctx); err != nil {
		return nil, err
	}
	p.sources[k] = s
	return s, nil
}

func (p *Provider) abs(f string) string {
	if f == "" || filepath.IsAbs(f) || p.baseDir == "" {
		return f
	}
	return filepath.Join(p.baseDir, f)
}

// UpstreamTLS is the upstream hook: for a cluster whose tls sets spiffe_id
// and a client certificate (cert_file) it returns a client config that
// presents cert_file/key_file, rotated from disk, and accepts only a server
// that chains to ca_file (also rotated) and carries exactly that SPIFFE ID.
// Other clusters, including spiffe_id without a client certificate, get
// (nil, nil): the upstream's own tls handling applies to them.
func (p *Provider) UpstreamTLS(cl config.Cluster) (*tls.Config, error) {
	t := cl.TLS
	if t == nil || t.SPIFFEID == "" || t.CertFile == "" {
		return nil, nil
	}
	if _, err := ParseID(t.SPIFFEID); err != nil {
		return nil, fmt.Errorf("mesh: cluster %q: %w", cl.Name, err)
	}
	if t.KeyFile == "" || t.CAFile == "" {
		return nil, fmt.Errorf("mesh: cluster %q: tls.spiffe_id with cert_file needs key_file and ca_file", cl.Name)
	}
	if t.InsecureSkipVerify {
		return nil, fmt.Errorf("mesh: cluster %q: tls.spiffe_id and insecure_skip_verify contradict each other", cl.Name)
	}
	s, err := p.Source(t.CertFile, t.KeyFile, t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: cluster %q: %w", cl.Name, err)
	}
	return s.ClientTLS(t.SPIFFEID), nil
}

// ListenerTLS returns a complete server config (ServerTLS) for a listener
// whose tls sets trust_domain: strict when client_auth is require,
// permissive when it is optional. Other listeners get (nil, nil). Use it
// where a plain tls.Config is wanted; proxy/listener uses ListenerHooks.
func (p *Provider) ListenerTLS(l config.Listener) (*tls.Config, error) {
	s, err := p.listenerSource(l)
	if s == nil || err != nil {
		return nil, err
	}
	mode := ModeStrict
	if l.TLS.ClientAuth == "optional" {
		mode = ModePermissive
	}
	return s.ServerTLS(mode), nil
}

// ListenerHooks are the TLS hooks of proxy/listener.Options for a mesh
// inbound listener.
type ListenerHooks struct {
	// GetCertificate serves the current identity.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs is the current trust bundle.
	ClientCAs func() *x509.CertPool
	// VerifyConnection checks the client's SPIFFE trust domain.
	VerifyConnection func(tls.ConnectionState) error
}

// ListenerHooks returns the hooks for a listener whose tls sets
// trust_domain (ok false for other listeners). The listener keeps its own
// client_auth handling (require = strict, optional = permissive) and
// allow_plaintext; the hooks make it use the rotating identity and bundle
// and refuse peers of another trust domain.
func (p *Provider) ListenerHooks(l config.Listener) (h ListenerHooks, ok bool, err error) {
	s, err := p.listenerSource(l)
	if s == nil || err != nil {
		return ListenerHooks{}, false, err
	}
	return ListenerHooks{GetCertificate: s.GetCertificate, ClientCAs: s.ClientCAs, VerifyConnection: s.VerifyClient}, true, nil
}

func (p *Provider) listenerSource(l config.Listener) (*Source, error) {
	t := l.TLS
	if t == nil || t.TrustDomain == "" {
		return nil, nil
	}
	if len(t.Certs) == 0 || t.ClientCAFile == "" {
		return nil, fmt.Errorf("mesh: listener %q: tls.trust_domain needs certs[0] and client_ca_file", l.Name)
	}
	s, err := p.Source(t.Certs[0].CertFile, t.Certs[0].KeyFile, t.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: listener %q: %w", l.Name, err)
	}
	if td := s.ID().TrustDomain; td != t.TrustDomain {
		return nil, fmt.Errorf("mesh: listener %q: certificate is in trust domain %q, config says %q", l.Name, td, t.TrustDomain)
	}
	return s, nil
}

// Stats sums the counters of every Source.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st Stats
	for _, s := range p.sources {
		x := s.Stats()
		st.ServerHandshakes += x.ServerHandshakes
		st.ClientHandshakes += x.ClientHandshakes
		st.Reloads += x.Reloads
		st.ReloadErrors += x.ReloadErrors
	}
	return st
}

// Close stops every Source's watcher.
func (p *Provider) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.cancel()
	var errs []error
	for _, s := range p.sources {
		errs = append(errs, s.Close(ctx))
	}
	return errors.Join(errs...)
}
