package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/listener"
	"github.com/wasmgate/wasmgate/proxy/router"
	"github.com/wasmgate/wasmgate/proxy/upstream"
)

// HTTPError is an error with the status the client should see.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return http.StatusText(e.Status) + ": " + e.Err.Error() }
func (e *HTTPError) Unwrap() error { return e.Err }

// Error wraps err with an HTTP status.
func Error(status int, err error) *HTTPError { return &HTTPError{Status: status, Err: err} }

// call is what the root handler tells the transport about one request.
type call struct {
	snap    *Snapshot
	route   *router.Route
	chain   *filter.Chain
	x       *filter.Exchange
	cluster *upstream.Cluster
	ran     int
	// trace is filled by the cluster: endpoint and tries, for the access log.
	trace upstream.CallTrace
	// err is the upstream error that ended the request, if any.
	err error
	// pending are response headers set by filters in the request phase.
	pending http.Header
	// in is the client's request body, closed when the upstream's h2/h3
	// answer ends (see closeInOnEOF).
	in io.ReadCloser
	// opts are the route's retry and timeout for the cluster.
	opts upstream.CallOptions
	// ctx is the request's context for the response phase: the answer's
	// own (resp.Request's) is the upstream call's, which ends as soon as a
	// filter has buffered the body.
	ctx context.Context
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// transport sends the outgoing request to the cluster chosen for it.
type transport struct{}

func (transport) RoundTrip(r *http.Request) (*http.Response, error) {
	c := callFrom(r.Context())
	if c == nil || c.cluster == nil {
		return nil, Error(http.StatusBadGateway, errors.New("no cluster for request"))
	}
	return c.cluster.Send(r, &c.opts)
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers. sync.Pool wants
// pointers and ReverseProxy hands back slices, so the *[]byte holders are
// recycled too: a Put would otherwise allocate one per request.
type bufferPool struct{ bufs, holders sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.bufs.Get().(*[]byte); ok {
		buf := *v
		*v = nil
		b.holders.Put(v)
		return buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(p []byte) {
	v, ok := b.holders.Get().(*[]byte)
	if !ok {
		v = new([]byte)
	}
	*v = p
	b.bufs.Put(v)
}

// newReverseProxy builds the one ReverseProxy the server uses; everything
// per request travels in the context.
func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      transport{},
		BufferPool:     &bufferPool{},
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.proxyError,
		ErrorLog:       zap.NewStdLog(s.log.Named("reverseproxy")),
	}
}

func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	c := callFrom(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = c.cluster.Name()
	out.Host = pr.In.Host
	if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
		out.Header["X-Forwarded-For"] = xff
	}
	pr.SetXForwarded()
	// The header is normally already right (set on the way in and cloned);
	// a filter may have changed it, and the proxy's id is what goes up.
	if id := c.x.Props.RequestID; len(out.Header["X-Request-Id"]) != 1 || out.Header["X-Request-Id"][0] != id {
		out.Header["X-Request-Id"] = []string{id}
	}
	if m := c.route.Config.Mirror; m != nil {
		c.snap.Upstreams.Mirror(out, *m)
	}
}

// modifyResponse runs the response phase of the chain on the upstream answer.
func (s *Server) modifyResponse(resp *http.Response) error {
	c := callFrom(resp.Request.Context())
	if c == nil {
		return nil
	}
	// The upstream's Alt-Svc names the upstream's ports, not ours.
	resp.Header.Del("Alt-Svc")
	if c.in != nil && resp.Request.ProtoMajor >= 2 {
		resp.Body = &closeInOnEOF{ReadCloser: resp.Body, in: c.in}
	}
	for k, v := range c.pending {
		if _, ok := resp.Header[k]; !ok {
			resp.Header[k] = v
		}
	}
	if c.chain.Empty() || c.ran == 0 {
		return nil
	}
	fr := &filter.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: resp.Body, Trailer: resp.Trailer}
	c.x.Response = fr
	ctx := c.ctx
	if ctx == nil {
		ctx = resp.Request.Context()
	}
	c.chain.RunResponse(ctx, c.x, c.ran)
	fr = c.x.Response
	resp.StatusCode = fr.StatusCode
	resp.Status = strconv.Itoa(fr.StatusCode) + " " + http.StatusText(fr.StatusCode)
	resp.Header = fr.Header
	if b, ok := fr.Buffered(); ok {
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		resp.TransferEncoding = nil
	} else if fr.Body != nil {
		resp.Body = fr.Body
	}
	return nil
}

// proxyError answers when the upstream exchange failed.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status := upstream.StatusFor(err)
	var he *HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Status
	case listener.IsBodyError(err):
		// The client's body was malformed or cut: its fault, not the upstream's.
		status = http.StatusBadRequest
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer. 499 as nginx does.
		status = 499
	}
	c := callFrom(r.Context())
	if c != nil {
		c.err = err
	}
	h := make(http.Header)
	if errors.Is(err, upstream.ErrOverloaded) {
		h.Set("X-Wasmgate-Overloaded", "true")
	}
	if c != nil {
		if ce := s.log.Check(zap.DebugLevel, "upstream error"); ce != nil {
			ce.Write(zap.String("route", c.route.Name), zap.String("request_id", c.x.Props.RequestID), zap.Int("status", status), zap.Error(err))
		}
		if c.ran > 0 {
			c.x.IsError = true
			c.x.Response = &filter.Response{StatusCode: status, Header: h}
			c.x.Response.SetBody(filter.ErrorBody(status, http.StatusText(status)))
			c.chain.RunResponse(r.Context(), c.x, c.ran)
			writeResponse(w, c.x.Response)
			return
		}
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	writeErrorFor(w, r, status, http.StatusText(status))
}

// closeInOnEOF closes the client's request body when the upstream's answer
// has been read to its end. A bidirectional h2 stream (gRPC) that the server
// ends would otherwise leave the transport waiting for a request body that
// the client never closes, and the trailers would never go out.
type closeInOnEOF struct {
	io.ReadCloser
	in   io.ReadCloser
	done bool
}

func (c *closeInOnEOF) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF && !c.done {
		c.done = true
		_ = c.in.Close()
	}
	return n, err
}

// writeResponse writes a filter.Response (local answer) to w.
func writeResponse(w http.ResponseWriter, resp *filter.Response) {
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	if b, ok := resp.Buffered(); ok {
		dst.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	w.WriteHeader(status)
	if resp.Body != nil {
		_, _ = io.Copy(w, resp.Body)
		_ = resp.Body.Close()
	}
}

// writeErrorFor writes the proxy's error in the form the client speaks:
// a gRPC status (trailers-only answer) for gRPC requests, JSON otherwise.
func writeErrorFor(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if isGRPC(r) {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
		return
	}
	writeError(w, status, msg)
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// grpcCode maps an HTTP status to a gRPC status code as gRPC's own
// HTTP-to-gRPC mapping does.
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case 499:
		return 1 // CANCELLED
	}
	return 13
}

// writeError writes the proxy's JSON error body.
func writeError(w http.ResponseWriter, status int, msg string) {
	body := filter.ErrorBody(status, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func clientIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
