package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/wasmgate/wasmgate/proxy/filter"
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
	snap := s.acquire()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, "no configuration loaded")
		return
	}
	defer snap.release()

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
		if s.peerID != nil {
			props.PeerID = s.peerID(r.TLS)
		}
		if len(r.TLS.PeerCertificates) > 0 {
			props.PeerSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
	}
	props.RequestID = r.Header.Get("X-Request-Id")
	if props.RequestID == "" || len(props.RequestID) > 128 {
		props.RequestID = newRequestID()
		r.Header.Set("X-Request-Id", props.RequestID)
	}
	w.Header().Set("X-Request-Id", props.RequestID)
	if s.hooks.Trace != nil {
		props.TraceID = s.hooks.Trace(r)
	}

	rt := snap.Table.Match(ci.Listener, r)
	var x *filter.Exchange
	if s.hooks.Done != nil {
		var rec http.ResponseWriter
		rec, finish := s.hooks.Done(w, r)
		w = rec
		defer func() { finish(rt, x) }()
	}
	if rt == nil {
		writeError(w, http.StatusNotFound, "no route for "+r.Host+r.URL.Path)
		return
	}
	props.Route = rt.Name
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
	x = filter.NewExchange(r, props)
	x.BodyCap = snap.Config.Limits.BodyBufferBytes
	ctx := filter.WithExchange(r.Context(), x)
	c := &call{snap: snap, route: rt, chain: chain, x: x}
	ran, next := chain.RunRequest(ctx, x)
	c.ran = ran
	if !next {
		chain.RunResponse(ctx, x, ran)
		writeResponse(w, x.Response)
		return
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
	ctx = context.WithValue(ctx, callKey{}, c)
	ctx = upstream.WithCallOptions(ctx, upstream.CallOptions{Retry: rt.Config.Retry, Timeout: rt.Config.Timeout})
	s.rp.ServeHTTP(w, r.WithContext(ctx))
}

// connInfo reads the listener of the request.
func (s *Server) connInfo(ctx context.Context) ConnInfo {
	if s.hooks.ConnInfo != nil {
		if ci, ok := s.hooks.ConnInfo(ctx); ok {
			return ci
		}
	}
	return connInfo(ctx)
}
