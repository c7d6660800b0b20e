// Package listener serves one root http.Handler on one configured listener:
// HTTP/1.1 and HTTP/2 over TCP (TLS, h2c, or TLS and plaintext sniffed on one
// port) and HTTP/3 over QUIC on the same port (UDP). It owns TLS (SNI,
// certificate and client CA reload, mTLS), client limits, Alt-Svc, 0-RTT
// policy and graceful shutdown; the handler gets connection facts through
// Info(ctx).
package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// DefaultAltSvcMaxAge is the Alt-Svc ma= used when the config leaves it 0.
const DefaultAltSvcMaxAge = 24 * time.Hour

// Options are the process-wide collaborators of a Listener. All are optional.
type Options struct {
	// Logger receives listener logs; named "listener.<name>".
	Logger *zap.Logger
	// Metrics records connection gauges and counters; create it once per
	// process with NewMetrics.
	Metrics *Metrics
	// GetCertificate, when set, replaces the certificates of the config (the
	// mesh supplies its rotating identity this way; tls.certs may be empty).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs, when set, is asked for the client CA pool on every
	// handshake instead of tls.client_ca_file (mesh trust bundles). It should
	// return the same pointer until the bundle changes.
	ClientCAs func() *x509.CertPool
	// VerifyConnection runs after the standard verification of every TLS and
	// QUIC handshake (the mesh checks peer SPIFFE IDs here).
	VerifyConnection func(tls.ConnectionState) error
	// CertCheckInterval is how often, at most, handshakes look for changed
	// certificate files. Default DefaultCertCheckInterval.
	CertCheckInterval time.Duration
}

// Listener is one configured listener. Lifecycle: New, Start, Shutdown.
type Listener struct {
	cfg     config.Listener
	limits  config.Limits
	log     *zap.Logger
	m       listenerMetrics
	handler http.Handler
	certs   *certSource // nil without file certificates
	tlsc    *tlsConfigs // nil without TLS
	srv     *http.Server
	h3      *http3.Server // nil without HTTP/3

	altSvc string // set in Start before serving
	active atomic.Int64

	mu      sync.Mutex
	started bool
	stopped bool
	ln      net.Listener
	udp     net.PacketConn
	wg      sync.WaitGroup
}

// New builds a listener from its config and the process-wide limits. It
// generates the self-signed certificate when asked and loads the
// certificates, so file problems surface here; it binds nothing.
func New(cfg config.Listener, limits config.Limits, h http.Handler, opts Options) (*Listener, error) {
	if h == nil {
		return nil, errors.New("listener: nil handler")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	l := &Listener{
		cfg:     cfg,
		limits:  limits,
		log:     log.Named("listener." + cfg.Name),
		m:       opts.Metrics.forListener(cfg.Name),
		handler: h,
	}
	http2 := cfg.HTTP2 == nil || *cfg.HTTP2
	h3on := cfg.HTTP3 != nil && (cfg.HTTP3.Enabled == nil || *cfg.HTTP3.Enabled)
	if t := cfg.TLS; t != nil {
		if t.SelfSigned && len(t.Certs) > 0 {
			made, err := EnsureSelfSigned(t.Certs[0].CertFile, t.Certs[0].KeyFile)
			if err != nil {
				return nil, err
			}
			if made {
				l.log.Info("generated self-signed certificate", zap.String("cert_file", t.Certs[0].CertFile))
			}
		}
		if len(t.Certs) > 0 || t.ClientCAFile != "" {
			var err error
			l.certs, err = newCertSource(t.Certs, t.ClientCAFile, opts.CertCheckInterval, l.log, &l.m)
			if err != nil {
				return nil, err
			}
		}
		var err error
		if l.tlsc, err = newTLSConfigs(t, http2, l.certs, opts); err != nil {
			return nil, err
		}
	} else if h3on {
		return nil, errors.New("listener: http3 needs tls on the same listener")
	}

	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(cfg.TLS != nil && http2)
	protos.SetUnencryptedHTTP2(cfg.H2C)
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(l.serveTCP),
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    serverHeaderBytes(limits.MaxHeaderBytes),
		Protocols:         protos,
		ConnContext:       l.connContext,
		ConnState:         l.connState,
		ErrorLog:          mustStdLog(l.log),
	}
	if h3on {
		l.h3 = l.newH3Server()
	}
	return l, nil
}

// serverHeaderBytes converts the configured header limit to net/http's
// MaxHeaderBytes, which gets 4 KiB of slack added by the server.
func serverHeaderBytes(limit int) int {
	const slack = 4096
	if limit >= 2*slack {
		return limit - slack
	}
	return limit
}

func mustStdLog(zl *zap.Logger) *log.Logger {
	l, err := zap.NewStdLogAt(zl, zapcore.DebugLevel)
	if err != nil {
		// Only fails for invalid levels; DebugLevel is valid.
		l = zap.NewStdLog(zl)
	}
	return l
}

// Name returns the listener's configured name.
func (l *Listener) Name() string { return l.cfg.Name }

// Start binds the TCP socket (and the UDP socket for HTTP/3 on the same
// port) and starts serving in the background. Bind errors are returned.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return fmt.Errorf("listener %s: already started", l.cfg.Name)
	}
	ln, udp, err := l.bind(ctx)
	if err != nil {
		return err
	}
	l.started = true
	l.udp = udp
	if udp != nil {
		port := udp.LocalAddr().(*net.UDPAddr).Port
		maxAge := l.cfg.HTTP3.AltSvcMaxAge
		if maxAge <= 0 {
			maxAge = DefaultAltSvcMaxAge
		}
		l.altSvc = fmt.Sprintf(`h3=":%d"; ma=%d`, port, int(maxAge/time.Second))
	}
	onSmuggle := func() { inc(l.m.smuggling) }
	if l.tlsc == nil {
		l.ln = guardListener{Listener: ln, onReject: onSmuggle}
	} else {
		sl := newSniffListener(ln, l.tlsc.base, l.limits.ReadHeaderTimeout, l.cfg.TLS.AllowPlaintext, func() { inc(l.m.sniffFail) })
		sl.onSmuggle = onSmuggle
		sl.onHandshakeErr = func(remote net.Addr, err error) {
			inc(l.m.handshakeFail)
			if ce := l.log.Check(zapcore.DebugLevel, "tls handshake failed"); ce != nil {
				ce.Write(zap.Stringer("remote", remote), zap.Error(err))
			}
		}
		l.ln = sl
	}
	l.wg.Go(func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("tcp serve stopped", zap.Error(err))
		}
	})
	if udp != nil {
		l.wg.Go(func() {
			if err := l.h3.Serve(udp); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.log.Error("quic serve stopped", zap.Error(err))
			}
		})
	}
	l.log.Info("listening", zap.Stringer("addr", ln.Addr()), zap.Bool("tls", l.tlsc != nil),
		zap.Bool("http3", udp != nil), zap.Bool("h2c", l.cfg.H2C))
	return nil
}

// bind opens the TCP socket and, for HTTP/3, the UDP socket on the same
// port. With port 0 it retries when the kernel's TCP port is taken on UDP.
func (l *Listener) bind(ctx context.Context) (net.Listener, net.PacketConn, error) {
	var lc net.ListenConfig
	_, port, err := net.SplitHostPort(l.cfg.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("listener %s: address %q: %w", l.cfg.Name, l.cfg.Address, err)
	}
	attempts := 1
	if port == "0" && l.h3 != nil {
		attempts = 8
	}
	for i := 0; ; i++ {
		ln, err := lc.Listen(ctx, "tcp", l.cfg.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("listener %s: bind tcp %s: %w", l.cfg.Name, l.cfg.Address, err)
		}
		if l.h3 == nil {
			return ln, nil, nil
		}
		tcp := ln.Addr().(*net.TCPAddr)
		udpAddr := net.JoinHostPort(tcp.IP.String(), strconv.Itoa(tcp.Port))
		udp, err := lc.ListenPacket(ctx, "udp", udpAddr)
		if err == nil {
			return ln, udp, nil
		}
		ln.Close()
		if i+1 >= attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("listener %s: bind udp %s: %w", l.cfg.Name, udpAddr, err)
		}
	}
}

// Addr returns the bound TCP address, nil before Start.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// H3Addr returns the bound UDP address of HTTP/3, nil when it is off or
// before Start.
func (l *Listener) H3Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.udp == nil {
		return nil
	}
	return l.udp.LocalAddr()
}

// ActiveConns returns the number of open TCP and QUIC connections.
func (l *Listener) ActiveConns() int64 { return l.active.Load() }

// ReloadCerts reloads certificates and the client CA file now (for SIGHUP
// or POST /reload); handshakes also notice changed files by themselves. On
// error the previous certificates stay in use.
func (l *Listener) ReloadCerts() error {
	if l.certs == nil {
		return nil
	}
	return l.certs.reload()
}

// Shutdown stops accepting, lets in-flight requests on TCP and QUIC finish
// until ctx is done, then closes what is left. HTTP/3 clients get GOAWAY.
// Hijacked connections (WebSocket) are not waited for.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if !l.started || l.stopped {
		l.stopped = true
		l.mu.Unlock()
		return nil
	}
	l.stopped = true
	l.mu.Unlock()

	var h3err error
	h3done := make(chan struct{})
	if l.udp != nil {
		go func() {
			defer close(h3done)
			// On ctx expiry http3 closes the remaining connections itself.
			h3err = l.h3.Shutdown(ctx)
		}()
	} else {
		close(h3done)
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	// Serve may not have taken the listener yet; closing twice is harmless.
	l.ln.Close()
	<-h3done
	if l.udp != nil {
		l.udp.Close()
	}
	l.wg.Wait()
	if err = errors.Join(err, h3err); err != nil {
		return fmt.Errorf("listener %s: shutdown: %w", l.cfg.Name, err)
	}
	return nil
}

// connContext puts the connection facts in every TCP connection's context.
func (l *Listener) connContext(ctx context.Context, c net.Conn) context.Context {
	st := &connState{info: ConnInfo{
		Listener:   l.cfg.Name,
		Role:       l.cfg.Role,
		LocalAddr:  c.LocalAddr(),
		RemoteAddr: c.RemoteAddr(),
	}}
	switch c := c.(type) {
	case *tls.Conn:
		st.info.TLS = true
	case *h1Guard:
		// HTTP/1 over TLS reaches net/http inside the guard, so net/http
		// does not know it is TLS; serveTCP puts the state back on r.TLS.
		if tc, ok := c.Conn.(*tls.Conn); ok {
			cs := tc.ConnectionState()
			st.info.TLS, st.tls = true, &cs
		}
	}
	return withConnState(ctx, st)
}

// connState counts TCP connections.
func (l *Listener) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		l.active.Add(1)
		add(l.m.tcpActive, 1)
		inc(l.m.tcpAccepted)
	case http.StateClosed, http.StateHijacked:
		l.active.Add(-1)
		add(l.m.tcpActive, -1)
	}
}

// serveTCP is the handler for HTTP/1.1 and HTTP/2.
func (l *Listener) serveTCP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		if st := connStateFrom(r.Context()); st != nil && st.tls != nil {
			r.TLS = st.tls
		}
	}
	if !validHost(r.Host) {
		badRequest(w, r, "invalid Host header")
		return
	}
	if l.altSvc != "" && r.TLS != nil {
		w.Header()["Alt-Svc"] = []string{l.altSvc}
	}
	wrapBody(r)
	l.handler.ServeHTTP(w, r)
}
