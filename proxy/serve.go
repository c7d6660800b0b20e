package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/listener"
	"github.com/wasmgate/wasmgate/proxy/observe"
	"github.com/wasmgate/wasmgate/proxy/observe/trace"
	"github.com/wasmgate/wasmgate/proxy/router"
	"github.com/wasmgate/wasmgate/proxy/upstream"
)

// ConnInfo tells the root handler which listener a request came from.
type ConnInfo struct {
	Listener string
	Role     string
}

type connInfoKey struct{}

// WithConnInfo returns a context carrying the listener of a connection.
func WithConnInfo(ctx context.Context, ci ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

func connInfo(ctx context.Context) ConnInfo {
	ci, ok := ctx.Value(connInfoKey{}).(ConnInfo)
	if !ok {
		return ConnInfo{Listener: "default", Role: "public"}
	}
	return ci
}

// ServeHTTP is the root handler: snapshot, route, chain, upstream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	snap := s.acquire()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, "no configuration loaded")
		return
	}
	defer snap.release()

	// Before anything reads the request: hop-by-hop headers, the path.
	perr := screen(r, &snap.Config.Paths)
	ci := s.connInfo(r.Context())
	props := filter.Properties{
		ClientAddr: r.RemoteAddr,
		ClientIP:   clientIP(r.RemoteAddr),
		Mode:       snap.Config.Mode,
		Listener:   ci.Listener,
		Protocol:   r.Proto,
		TLS:        r.TLS != nil,
	}
	if r.TLS != nil {
		props.SNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			p := listener.PeerOf(r.Context(), r.TLS, s.derivePeer)
			props.PeerID, props.PeerSubject = p.ID, p.Subject
		}
	}
	idv := r.Header["X-Request-Id"]
	if len(idv) == 0 || idv[0] == "" || len(idv[0]) > 128 {
		props.RequestID = observe.NewRequestID()
		idv = []string{props.RequestID}
		r.Header["X-Request-Id"] = idv
	} else {
		props.RequestID = idv[0]
		idv = idv[:1:1]
	}
	// The answer carries the same id; the slice is shared and never written
	// in place (Header.Set replaces it).
	w.Header()["X-Request-Id"] = idv
	// The upstream hop is a child span of the caller's (or a new) trace.
	tc, _ := trace.FromRequest(r)
	props.TraceID = tc.Child().InjectID(r.Header)

	st := &exchangeState{}
	st.rec.Reset(w)
	rec := &st.rec
	w = rec
	var body *observe.BodyCounter
	if r.Body != nil && r.Body != http.NoBody {
		body = observe.CountBody(r)
	}
	if s.metrics != nil {
		s.metrics.RequestStarted()
	}
	var rt *router.Route
	if perr == nil {
		rt = snap.Table.Match(ci.Listener, r)
	}
	var c *call
	defer func() { s.finish(start, r, rec, body, ci, rt, c, &st.x.Props) }()
	st.x.Props = props
	switch {
	case perr != nil:
		writeErrorFor(w, r, http.StatusBadRequest, perr.Error())
		return
	case connectRefused(r, rt):
		refuseConnect(w, r)
		return
	case rt == nil:
		writeErrorFor(w, r, http.StatusNotFound, "no route for "+r.Host+r.URL.Path)
		return
	}
	st.x.Props.Route = rt.Name
	if d := rt.Config.Direct; d != nil {
		for k, v := range d.Headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(d.Body)))
		w.WriteHeader(d.Status)
		_, _ = w.Write([]byte(d.Body))
		return
	}
	if rd := rt.Config.Redirect; rd != nil {
		status := rd.Status
		if status == 0 {
			status = http.StatusFound
		}
		http.Redirect(w, r, rd.URL, status)
		return
	}

	chain, _ := rt.Chain.(*filter.Chain)
	st.resp = filter.Response{StatusCode: http.StatusOK, Header: make(http.Header)}
	x := &st.x
	x.Request, x.Response = r, &st.resp
	x.BodyCap = snap.Config.Limits.BodyBufferBytes
	ctx := filter.WithExchange(r.Context(), x)
	c = &st.c
	*c = call{snap: snap, route: rt, chain: chain, x: x, ctx: ctx}
	ran, next := chain.RunRequest(ctx, x)
	c.ran = ran
	if !next {
		chain.RunResponse(ctx, x, ran)
		writeResponse(w, x.Response)
		return
	}
	// Response headers a filter set while continuing are sent with the
	// upstream's answer (the upstream wins on a clash).
	if len(x.Response.Header) > 0 {
		c.pending = x.Response.Header
	}
	// Filters may have replaced the request's URL; routing decisions use the
	// request as the chain left it.
	r = x.Request
	name := rt.Cluster(r, nil)
	c.cluster = snap.Upstreams.Cluster(name)
	if c.cluster == nil {
		s.proxyError(w, r.WithContext(context.WithValue(ctx, callKey{}, c)), Error(http.StatusBadGateway, errors.New("unknown cluster "+name)))
		return
	}
	if rt.Rewrites() {
		p := rt.RewritePath(r.URL.Path)
		r.URL.Path = p
		r.URL.RawPath = ""
	}
	if r.Body != nil && r.Body != http.NoBody {
		c.in = r.Body
	}
	ctx = context.WithValue(ctx, callKey{}, c)
	c.opts = upstream.CallOptions{Retry: rt.Config.Retry, Timeout: rt.Config.Timeout, Trace: &c.trace}
	s.rp.ServeHTTP(w, r.WithContext(ctx))
}

// exchangeState is everything one proxied request needs from the heap,
// allocated at once.
type exchangeState struct {
	c    call
	x    filter.Exchange
	resp filter.Response
	rec  observe.ResponseRecorder
}

// connInfo reads the listener of the request.
func (s *Server) connInfo(ctx context.Context) ConnInfo {
	if info, ok := listener.Info(ctx); ok {
		return ConnInfo{Listener: info.Listener, Role: info.Role}
	}
	return connInfo(ctx)
}

// derivePeer computes the peer properties of a client certificate (see
// listener.PeerOf, which calls it once per connection).
func (s *Server) derivePeer(cs *tls.ConnectionState) listener.Peer {
	var p listener.Peer
	if s.peerID != nil {
		p.ID = s.peerID(cs)
	}
	if len(cs.PeerCertificates) > 0 {
		p.Subject = cs.PeerCertificates[0].Subject.String()
	}
	return p
}

// finish records metrics and the access log line of one request.
func (s *Server) finish(start time.Time, r *http.Request, rec *observe.ResponseRecorder, body *observe.BodyCounter, ci ConnInfo, rt *router.Route, c *call, props *filter.Properties) {
	took := time.Since(start)
	status := rec.Status()
	switch {
	case rec.Hijacked():
		status = http.StatusSwitchingProtocols
	case status == 0:
		// Nothing was written: the client went away first (nginx's 499).
		status = 499
	}
	var in int64
	if body != nil {
		in = body.N()
	}
	route := ""
	if rt != nil {
		route = rt.Name
	}
	if s.metrics != nil {
		s.metrics.RequestDone(route, r.Method, status, took, in, rec.BytesWritten())
	}
	if s.access == nil {
		return
	}
	e := observe.AccessEntry{
		Start: start, Duration: took,
		Method: r.Method, Host: r.Host, Path: r.URL.Path, Proto: r.Proto,
		Status: status, BytesIn: in, BytesOut: rec.BytesWritten(),
		ClientAddr: r.RemoteAddr, Listener: ci.Listener, Route: route,
		RequestID: props.RequestID, TraceID: props.TraceID,
	}
	if c != nil {
		e.Decisions = c.x.Decisions
		e.Upstream = c.trace.Endpoint
		if c.cluster != nil {
			e.Cluster = c.cluster.Name()
		}
		if c.err != nil {
			e.Error = c.err.Error()
		}
	}
	s.access.Log(&e)
}
