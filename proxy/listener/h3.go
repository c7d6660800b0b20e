package listener

import (
	"context"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// newH3Server builds the HTTP/3 server of a TLS listener: same handler and
// certificates as TCP, the listener's stream and idle limits, and 0-RTT only
// when allowed.
func (l *Listener) newH3Server() *http3.Server {
	c := l.cfg.HTTP3
	return &http3.Server{
		Handler:   http.HandlerFunc(l.serveH3),
		TLSConfig: l.tlsc.quicBase,
		QUICConfig: &quic.Config{
			MaxIncomingStreams: c.MaxStreams,
			MaxIdleTimeout:     c.IdleTimeout,
			Allow0RTT:          c.Allow0RTT,
		},
		MaxHeaderBytes: l.limits.MaxHeaderBytes,
		IdleTimeout:    c.IdleTimeout,
		ConnContext:    l.quicConnContext,
	}
}

// quicConnContext counts QUIC connections and puts the connection facts in
// the connection's context.
func (l *Listener) quicConnContext(ctx context.Context, c *quic.Conn) context.Context {
	l.active.Add(1)
	add(l.m.quicActive, 1)
	inc(l.m.quicAccepted)
	context.AfterFunc(c.Context(), func() {
		l.active.Add(-1)
		add(l.m.quicActive, -1)
	})
	return withConnState(ctx, &connState{
		info: ConnInfo{
			Listener:   l.cfg.Name,
			Role:       l.cfg.Role,
			LocalAddr:  c.LocalAddr(),
			RemoteAddr: c.RemoteAddr(),
			TLS:        true,
			QUIC:       true,
		},
		inEarlyData: func() bool { return !handshakeDone(c) },
	})
}

// serveH3 is the handler for HTTP/3. A request that arrives in 0-RTT (before
// the handshake completed) is replayable by an attacker: safe methods are
// served and marked "Early-Data: 1" for the upstream (RFC 8470), others get
// 425 Too Early and the client retries after the handshake.
func (l *Listener) serveH3(w http.ResponseWriter, r *http.Request) {
	if !validHost(r.Host) {
		badRequest(w, r, "invalid Host header")
		return
	}
	if st := connStateFrom(r.Context()); st != nil && st.inEarlyData != nil && st.inEarlyData() {
		if !safeMethod(r.Method) {
			inc(l.m.tooEarly)
			http.Error(w, "425 Too Early", http.StatusTooEarly)
			return
		}
		r.Header.Set("Early-Data", "1")
	}
	wrapBody(r)
	l.handler.ServeHTTP(w, r)
}

func handshakeDone(c *quic.Conn) bool {
	select {
	case <-c.HandshakeComplete():
		return true
	default:
		return false
	}
}

// safeMethod reports whether a method is safe to replay (RFC 9110 9.2.1).
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
