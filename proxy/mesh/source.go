package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// SourceOptions locate one identity on disk.
type SourceOptions struct {
	// CertFile is the PEM certificate (chain) carrying this service's SPIFFE ID.
	CertFile string
	// KeyFile is the PEM private key of CertFile.
	KeyFile string
	// BundleFile is the PEM trust bundle peers are verified against.
	BundleFile string
	// PollInterval is a fallback check of the files' size and mtime, for
	// changes the file watcher misses (and retries after a failed reload).
	// Default 5s.
	PollInterval time.Duration
	// Debounce groups bursts of file events into one reload. Default 100ms.
	Debounce time.Duration
	// Logger receives reload results (named "source" under it). Default no-op.
	Logger *zap.Logger
}

// Stats are a Source's counters.
type Stats struct {
	// ServerHandshakes is the number of TLS handshakes served (inbound).
	ServerHandshakes uint64
	// ClientHandshakes is the number of TLS handshakes made (outbound).
	ClientHandshakes uint64
	// Reloads counts successful loads from disk (including the first).
	Reloads uint64
	// ReloadErrors counts loads that failed and kept the previous identity.
	ReloadErrors uint64
}

// Source is one identity (certificate, key, trust bundle) loaded from files
// and reloaded when they change on disk. Every handshake reads the current
// identity through an atomic pointer, so a rotation never interrupts a
// handshake and never drops a request: existing connections keep going,
// new handshakes use the new certificate and bundle.
type Source struct {
	opts SourceOptions
	log  *zap.Logger
	cur  atomic.Pointer[material]

	serverHS, clientHS    atomic.Uint64
	reloads, reloadErrors atomic.Uint64
	reloadMu              sync.Mutex
	startOnce, closeOnce  sync.Once
	cancel                context.CancelFunc
	done                  chan struct{}
	watcher               *fsnotify.Watcher
}

// material is one immutable loaded identity.
type material struct {
	cert    *tls.Certificate
	leaf    *x509.Certificate
	id      ID
	pool    *x509.CertPool
	stamp   [3]fileStamp
	servers [2]*tls.Config // strict, permissive
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

// NewSource loads the identity once; it fails when the files are missing,
// the key does not match the certificate, the certificate has no valid
// SPIFFE ID, or the bundle does not verify it. Call Start to follow
// rotations and Close to stop.
func NewSource(opts SourceOptions) (*Source, error) {
	if opts.CertFile == "" || opts.KeyFile == "" || opts.BundleFile == "" {
		return nil, errors.New("mesh: source: cert, key and bundle files are required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Source{opts: opts, log: log.Named("source"), done: make(chan struct{})}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// ID returns the current identity's SPIFFE ID.
func (s *Source) ID() ID { return s.cur.Load().id }

// NotAfter returns the current certificate's expiry.
func (s *Source) NotAfter() time.Time { return s.cur.Load().leaf.NotAfter }

// Stats returns the source's counters.
func (s *Source) Stats() Stats {
	return Stats{
		ServerHandshakes: s.serverHS.Load(),
		ClientHandshakes: s.clientHS.Load(),
		Reloads:          s.reloads.Load(),
		ReloadErrors:     s.reloadErrors.Load(),
	}
}

// Reload reads the files again and swaps the identity in. On any error the
// previous identity keeps serving and the error is returned.
func (s *Source) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	m, err := s.load()
	if err != nil {
		s.reloadErrors.Add(1)
		return err
	}
	prev := s.cur.Swap(m)
	s.reloads.Add(1)
	if prev != nil && (!prev.leaf.Equal(m.leaf) || !prev.pool.Equal(m.pool)) {
		s.log.Info("identity reloaded", zap.String("spiffe_id", m.id.String()),
			zap.Time("not_after", m.leaf.NotAfter), zap.String("serial", m.leaf.SerialNumber.Text(16)))
	}
	return nil
}

func (s *Source) load() (*material, error) {
	var st [3]fileStamp
	for i, f := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.BundleFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("mesh: load identity: %w", err)
		}
		st[i] = fileStamp{fi.Size(), fi.ModTime()}
	}
	certPEM, err := os.ReadFile(s.opts.CertFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity: %w", err)
	}
	keyPEM, err := os.ReadFile(s.opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity: %w", err)
	}
	bundlePEM, err := os.ReadFile(s.opts.BundleFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity %s / %s: %w", s.opts.CertFile, s.opts.KeyFile, err)
	}
	roots, err := parseCerts(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("mesh: load bundle %s: %w", s.opts.BundleFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	leaf := pair.Leaf
	id, err := IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity %s: %w", s.opts.CertFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: intermediates(pair.Certificate[1:]),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("mesh: load identity %s: not verified by bundle %s: %w", s.opts.CertFile, s.opts.BundleFile, err)
	}
	m := &material{cert: &pair, leaf: leaf, id: id, pool: pool, stamp: st}
	m.servers[0] = s.serverConfig(m, tls.RequireAndVerifyClientCert)
	m.servers[1] = s.serverConfig(m, tls.VerifyClientCertIfGiven)
	return m, nil
}

func intermediates(ders [][]byte) *x509.CertPool {
	if len(ders) == 0 {
		return nil
	}
	p := x509.NewCertPool()
	for _, d := range ders {
		if c, err := x509.ParseCertificate(d); err == nil {
			p.AddCert(c)
		}
	}
	return p
}

// Start follows rotations: it watches the files' directories and polls
// their size and mtime as a fallback. It returns once the watcher runs.
func (s *Source) Start(ctx context.Context) error {
	var err error
	s.startOnce.Do(func() {
		w, werr := fsnotify.NewWatcher()
		if werr != nil {
			err = fmt.Errorf("mesh: watch identity: %w", werr)
			return
		}
		dirs := map[string]bool{}
		for _, f := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.BundleFile} {
			dirs[filepath.Dir(f)] = true
		}
		for d := range dirs {
			if werr := w.Add(d); werr != nil {
				_ = w.Close()
				err = fmt.Errorf("mesh: watch %s: %w", d, werr)
				return
			}
		}
		s.watcher = w
		ctx, s.cancel = context.WithCancel(ctx)
		go s.run(ctx)
	})
	return err
}

func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	names := map[string]bool{}
	for _, f := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.BundleFile} {
		names[filepath.Clean(f)] = true
	}
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			if names[filepath.Clean(ev.Name)] || ev.Has(fsnotify.Create) && filepath.Base(ev.Name) == "..data" {
				debounce.Reset(s.opts.Debounce)
			}
		case err, ok := <-s.watcher.Errors:
			if !ok {
				return
			}
			s.log.Warn("identity watcher error", zap.Error(err))
		case <-debounce.C:
			s.reloadLogged()
		case <-poll.C:
			if s.changed() {
				s.reloadLogged()
			}
		}
	}
}

func (s *Source) reloadLogged() {
	if err := s.Reload(); err != nil {
		s.log.Warn("identity reload failed, keeping the previous identity", zap.Error(err))
	}
}

// changed reports whether any file's size or mtime differs from the loaded
// identity's (so a failed reload is retried at every poll until it succeeds).
func (s *Source) changed() bool {
	m := s.cur.Load()
	for i, f := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.BundleFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return false
		}
		if fi.Size() != m.stamp[i].size || !fi.ModTime().Equal(m.stamp[i].mtime) {
			return true
		}
	}
	return false
}

// Close stops following rotations. The last identity stays usable.
func (s *Source) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		err = s.watcher.Close()
		select {
		case <-s.done:
		case <-ctx.Done():
			err = errors.Join(err, ctx.Err())
		}
	})
	if err != nil {
		return fmt.Errorf("mesh: close source: %w", err)
	}
	return nil
}
