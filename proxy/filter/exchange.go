// Package filter defines what a filter is, how filters are built from config
// and how a chain of them runs on a request and its response. It knows nothing
// about Wasm, processes or upstreams: those register a Factory here.
package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// ErrBodyTooLarge is returned when a filter asks to buffer a body bigger than the cap.
var ErrBodyTooLarge = errors.New("filter: body exceeds buffer cap")

// DefaultBodyCap is the buffering cap used when a chain does not set one.
const DefaultBodyCap = 4 << 20

// Properties are the facts about a request that filters may read but not change.
type Properties struct {
	// ClientAddr is the remote address of the downstream connection ("ip:port").
	ClientAddr string
	// ClientIP is the IP part of ClientAddr.
	ClientIP string
	// PeerID is the verified SPIFFE ID of the TLS peer (mTLS), empty if none.
	PeerID string
	// PeerSubject is the verified client certificate subject, empty if none.
	PeerSubject string
	// SNI is the TLS server name the client asked for.
	SNI string
	// Route is the name of the matched route.
	Route string
	// Mode is "edge" or "sidecar".
	Mode string
	// RequestID is the X-Request-Id of this request (generated when absent).
	RequestID string
	// TraceID is the W3C trace id of this request.
	TraceID string
	// Listener is the name of the listener that accepted the request.
	Listener string
	// Protocol is the request protocol, e.g. "HTTP/1.1", "HTTP/2.0", "HTTP/3.0".
	Protocol string
	// TLS is true when the downstream connection is TLS (or QUIC).
	TLS bool
}

// Get returns a property by its ABI name ("client_addr", "peer_id", ...).
func (p *Properties) Get(name string) (string, bool) {
	switch name {
	case "client_addr", "remote_addr":
		return p.ClientAddr, true
	case "client_ip":
		return p.ClientIP, true
	case "peer_id", "peer_spiffe_id", "source.principal":
		return p.PeerID, true
	case "peer_subject":
		return p.PeerSubject, true
	case "sni":
		return p.SNI, true
	case "route", "route_name":
		return p.Route, true
	case "mode":
		return p.Mode, true
	case "request_id":
		return p.RequestID, true
	case "trace_id":
		return p.TraceID, true
	case "listener":
		return p.Listener, true
	case "protocol":
		return p.Protocol, true
	case "tls":
		return strconv.FormatBool(p.TLS), true
	}
	return "", false
}

// Response is the response a filter sees: a local answer being built in the
// request phase, or the upstream's answer in the response phase.
type Response struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Header holds the response headers.
	Header http.Header
	// Body is the streaming body; nil for an empty body. After BufferBody or
	// SetBody it reads the buffered bytes.
	Body io.ReadCloser
	// Trailer holds trailers of the upstream response, if any.
	Trailer http.Header

	buf      []byte
	buffered bool
	modified bool
}

// BufferBody reads the whole body (at most max bytes) and keeps it so the
// body still streams to the client afterwards.
func (r *Response) BufferBody(max int64) ([]byte, error) {
	if r.buffered {
		return r.buf, nil
	}
	b, err := readCapped(r.Body, max)
	if errors.Is(err, ErrBodyTooLarge) {
		// Put back what was read so the body still streams unchanged.
		r.Body = rejoin(b, r.Body)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	// The upstream body was read to its end; close it now, because the copy
	// replaces it and nobody else holds it: the upstream call (its in-flight
	// slot, its connection) ends only when that body is closed.
	if r.Body != nil {
		_ = r.Body.Close()
	}
	r.buf, r.buffered = b, true
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// SetBody replaces the body.
func (r *Response) SetBody(b []byte) {
	if r.Body != nil && !r.buffered {
		_ = r.Body.Close()
	}
	r.buf, r.buffered, r.modified = b, true, true
	r.Body = io.NopCloser(bytes.NewReader(b))
}

// BodyModified reports whether a filter replaced the body.
func (r *Response) BodyModified() bool { return r.modified }

// Buffered returns the buffered body and whether it is buffered.
func (r *Response) Buffered() ([]byte, bool) { return r.buf, r.buffered }

// Exchange is one request and its response as they pass through a chain.
// It is not safe for concurrent use; a chain runs its filters in order.
type Exchange struct {
	// Request is the request being proxied; filters may change its method,
	// URL, headers and body.
	Request *http.Request
	// Response is the local answer (request phase) or the upstream answer
	// (response phase).
	Response *Response
	// Props are read-only facts about the request.
	Props Properties
	// Values are per-request values that survive from the request phase to the
	// response phase and are visible to later filters (e.g. "consumer", "jwt.sub").
	Values map[string]string
	// Decisions records what each filter decided, for the access log.
	Decisions []Decision
	// BodyCap bounds request and response buffering.
	BodyCap int64
	// IsError is true in the response phase when no upstream answer exists
	// (the upstream failed and the response is a proxy error).
	IsError bool

	reqBuf      []byte
	reqBuffered bool
	state       map[any]any
}

// Decision is one filter's verdict on a request, for logs and metrics.
type Decision struct {
	Filter string
	Action string // "continue", "respond", "error", "fail_open"
	Status int
	Took   time.Duration
}

// NewExchange prepares an exchange for r.
func NewExchange(r *http.Request, props Properties) *Exchange {
	return &Exchange{
		Request:  r,
		Response: &Response{StatusCode: http.StatusOK, Header: make(http.Header)},
		Props:    props,
		BodyCap:  DefaultBodyCap,
	}
}

// Value returns a per-request value.
func (x *Exchange) Value(k string) (string, bool) {
	v, ok := x.Values[k]
	return v, ok
}

// SetValue sets a per-request value.
func (x *Exchange) SetValue(k, v string) {
	if x.Values == nil {
		x.Values = make(map[string]string, 4)
	}
	x.Values[k] = v
}

// State returns filter-private state stored under key (usually the filter itself).
func (x *Exchange) State(key any) any { return x.state[key] }

// SetState stores filter-private state for the response phase.
func (x *Exchange) SetState(key, v any) {
	if x.state == nil {
		x.state = make(map[any]any, 2)
	}
	x.state[key] = v
}

// RequestBody buffers the request body (at most BodyCap bytes) and returns it;
// the request keeps a readable copy for the upstream.
func (x *Exchange) RequestBody() ([]byte, error) {
	if x.reqBuffered {
		return x.reqBuf, nil
	}
	if x.Request.Body == nil || x.Request.Body == http.NoBody {
		x.reqBuffered = true
		return nil, nil
	}
	b, err := readCapped(x.Request.Body, x.BodyCap)
	if errors.Is(err, ErrBodyTooLarge) {
		x.Request.Body = rejoin(b, x.Request.Body)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	x.SetRequestBody(b)
	return b, nil
}

// SetRequestBody replaces the request body and fixes Content-Length.
func (x *Exchange) SetRequestBody(b []byte) {
	x.reqBuf, x.reqBuffered = b, true
	r := x.Request
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.TransferEncoding = nil
	if len(b) == 0 {
		r.Body = http.NoBody
	}
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// Respond makes the exchange answer locally with status, optional headers and body.
// A filter calls it and returns Stop from HandleRequest.
func (x *Exchange) Respond(status int, h http.Header, body []byte) {
	x.Response.StatusCode = status
	for k, vs := range h {
		x.Response.Header[k] = append(x.Response.Header[k], vs...)
	}
	if body != nil {
		x.Response.SetBody(body)
	}
}

func readCapped(rc io.ReadCloser, max int64) ([]byte, error) {
	if rc == nil {
		return nil, nil
	}
	if max <= 0 {
		max = DefaultBodyCap
	}
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("filter: read body: %w", err)
	}
	if int64(len(b)) > max {
		return b, ErrBodyTooLarge
	}
	return b, nil
}

// rejoin returns a body that reads prefix and then the rest of rc.
func rejoin(prefix []byte, rc io.ReadCloser) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(prefix), rc), rc}
}

// ctxKey is the context key type of this package.
type ctxKey struct{}

// WithExchange returns a context that carries x.
func WithExchange(ctx context.Context, x *Exchange) context.Context {
	return context.WithValue(ctx, ctxKey{}, x)
}

// FromContext returns the exchange carried by ctx, if any.
func FromContext(ctx context.Context) *Exchange {
	x, _ := ctx.Value(ctxKey{}).(*Exchange)
	return x
}
