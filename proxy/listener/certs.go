package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// DefaultCertCheckInterval is how often, at most, a handshake looks at the
// certificate and CA files for changes.
const DefaultCertCheckInterval = time.Second

// certSource serves certificates by SNI from files and reloads them, and the
// client CA bundle, when the files change. Changes are noticed on a
// handshake, at most once per interval, by one handshake at a time; the
// others keep using the current set, so rotation never stalls or fails a
// handshake. A set that fails to load (half-written file, key not matching
// the cert) is logged and the previous set stays in use.
type certSource struct {
	specs    []config.Cert
	caFile   string
	interval time.Duration
	log      *zap.Logger
	metrics  *listenerMetrics

	cur       atomic.Pointer[certSet]
	nextCheck atomic.Int64 // unix nanos
	reloadMu  sync.Mutex
}

// certSet is one immutable generation of certificates and client CAs.
type certSet struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // "example.com" serves "*.example.com"
	def      *tls.Certificate
	pool     *x509.CertPool // nil without client_ca_file
	stamps   []fileStamp
}

// fileStamp identifies one version of a file on disk.
type fileStamp struct {
	path string
	info os.FileInfo
}

func (s fileStamp) changed() bool {
	fi, err := os.Stat(s.path)
	if err != nil {
		// A file being replaced may be briefly missing; keep the current set.
		return false
	}
	return !os.SameFile(fi, s.info) || !fi.ModTime().Equal(s.info.ModTime()) || fi.Size() != s.info.Size()
}

func newCertSource(specs []config.Cert, caFile string, interval time.Duration, log *zap.Logger, m *listenerMetrics) (*certSource, error) {
	if interval <= 0 {
		interval = DefaultCertCheckInterval
	}
	s := &certSource{specs: specs, caFile: caFile, interval: interval, log: log, metrics: m}
	set, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(set)
	s.nextCheck.Store(time.Now().Add(interval).UnixNano())
	return s, nil
}

// load reads every file into a new certSet.
func (s *certSource) load() (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	var errs []error
	for i, spec := range s.specs {
		// Stat before reading: if the file changes while we read, the next
		// check sees a newer stamp and loads again.
		cs, cerr := stat(spec.CertFile)
		ks, kerr := stat(spec.KeyFile)
		if err := errors.Join(cerr, kerr); err != nil {
			errs = append(errs, fmt.Errorf("certs[%d]: %w", i, err))
			continue
		}
		set.stamps = append(set.stamps, cs, ks)
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("certs[%d]: %w", i, err))
			continue
		}
		if set.def == nil {
			set.def = &cert
		}
		names := spec.SNI
		if len(names) == 0 {
			names = certNames(cert.Leaf)
		}
		for _, n := range names {
			n = normalizeName(n)
			if base, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := set.wildcard[base]; !dup {
					set.wildcard[base] = &cert
				}
				continue
			}
			if _, dup := set.exact[n]; !dup {
				set.exact[n] = &cert
			}
		}
	}
	if s.caFile != "" {
		st, err := stat(s.caFile)
		if err != nil {
			errs = append(errs, err)
		} else {
			set.stamps = append(set.stamps, st)
			pem, err := os.ReadFile(s.caFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("client_ca_file: %w", err))
			} else {
				set.pool = x509.NewCertPool()
				if !set.pool.AppendCertsFromPEM(pem) {
					errs = append(errs, fmt.Errorf("client_ca_file %s: no PEM certificates", s.caFile))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("listener: load tls files: %w", err)
	}
	return set, nil
}

func stat(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{path: path, info: fi}, nil
}

// certNames are the SNI names a certificate serves when the config names none.
func certNames(leaf *x509.Certificate) []string {
	if leaf == nil {
		return nil
	}
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if leaf.Subject.CommonName != "" {
		return []string{leaf.Subject.CommonName}
	}
	return nil
}

func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(n), ".")
}

// current returns the certificate set, reloading it first when its files
// changed and the check interval has passed.
func (s *certSource) current() *certSet {
	now := time.Now().UnixNano()
	next := s.nextCheck.Load()
	if now >= next && s.nextCheck.CompareAndSwap(next, now+int64(s.interval)) {
		s.reloadIfChanged()
	}
	return s.cur.Load()
}

// reloadIfChanged loads a new set when any file changed since the current
// one was loaded. It reports whether a new set is now in use.
func (s *certSource) reloadIfChanged() bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.cur.Load()
	changed := false
	for _, st := range old.stamps {
		if st.changed() {
			changed = true
			break
		}
	}
	if !changed {
		return false
	}
	return s.reloadLocked() == nil
}

// reload loads the files now, whether they changed or not.
func (s *certSource) reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadLocked()
}

func (s *certSource) reloadLocked() error {
	set, err := s.load()
	if err != nil {
		inc(s.metrics.reloadErr)
		s.log.Warn("tls files changed but do not load; keeping the previous certificates", zap.Error(err))
		return err
	}
	s.cur.Store(set)
	inc(s.metrics.reloadOK)
	s.log.Info("tls certificates reloaded", zap.Int("certs", len(s.specs)), zap.Bool("client_ca", s.caFile != ""))
	return nil
}

// getCertificate picks the certificate for the client's SNI: exact name,
// then wildcard, then the first configured certificate.
func (s *certSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current().pick(hello.ServerName), nil
}

func (set *certSet) pick(serverName string) *tls.Certificate {
	if serverName == "" {
		return set.def
	}
	name := normalizeName(serverName)
	if c, ok := set.exact[name]; ok {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c, ok := set.wildcard[rest]; ok {
			return c
		}
	}
	return set.def
}

// clientCAs returns the current client CA pool from client_ca_file.
func (s *certSource) clientCAs() *x509.CertPool {
	return s.current().pool
}
