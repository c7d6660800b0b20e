package sdk

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/wasmgate/wasmgate/abi"
)

const (
	headerKindRequest          = uint32(abi.HeaderKindRequest)
	headerKindResponse         = uint32(abi.HeaderKindResponse)
	headerKindRequestTrailers  = uint32(abi.HeaderKindRequestTrailers)
	headerKindResponseTrailers = uint32(abi.HeaderKindResponseTrailers)
	bodyKindRequest            = uint32(abi.BodyKindRequest)
	bodyKindResponse           = uint32(abi.BodyKindResponse)
)

// ErrBufferingUnavailable is returned by Body when the host would not
// buffer the body (FeatureBufferRequest / FeatureBufferResponse refused).
var ErrBufferingUnavailable = errors.New("sdk: body buffering unavailable")

// Request is the current request. Its methods call the host; the value
// itself holds nothing and is only valid during the handler call.
type Request struct{}

// Method returns the request method, e.g. "GET".
func (Request) Method() string { return hst().Method() }

// SetMethod replaces the request method.
func (Request) SetMethod(method string) { hst().SetMethod(method) }

// URI returns the request target: path and query, e.g. "/a/b?x=1".
func (Request) URI() string { return hst().URI() }

// SetURI replaces the request target (path and query).
func (Request) SetURI(uri string) { hst().SetURI(uri) }

// Path returns the path part of the request target (still escaped).
func (r Request) Path() string {
	p, _, _ := strings.Cut(r.URI(), "?")
	return p
}

// SetPath replaces the path and keeps the query.
func (r Request) SetPath(path string) {
	_, q, ok := strings.Cut(r.URI(), "?")
	if ok {
		path += "?" + q
	}
	r.SetURI(path)
}

// RawQuery returns the query without the "?", still encoded.
func (r Request) RawQuery() string {
	_, q, _ := strings.Cut(r.URI(), "?")
	return q
}

// Query parses the query. Malformed pairs are skipped.
func (r Request) Query() url.Values {
	v, _ := url.ParseQuery(r.RawQuery())
	return v
}

// SetQuery replaces the query with v encoded (sorted by key); an empty v
// removes it.
func (r Request) SetQuery(v url.Values) {
	uri := r.Path()
	if q := v.Encode(); q != "" {
		uri += "?" + q
	}
	r.SetURI(uri)
}

// Protocol returns the protocol version, e.g. "HTTP/1.1" or "HTTP/2.0".
func (Request) Protocol() string { return hst().ProtocolVersion() }

// SourceAddr returns the client's address as host:port.
func (Request) SourceAddr() string { return hst().SourceAddr() }

// Header returns the request headers.
func (Request) Header() Header { return Header{kind: headerKindRequest} }

// Trailer returns the request trailers (needs FeatureTrailers and a
// buffered body).
func (Request) Trailer() Header { return Header{kind: headerKindRequestTrailers} }

// Body returns the whole request body. It enables FeatureBufferRequest, so
// the body is still sent upstream afterwards (or whatever SetBody wrote).
// The host caps buffered bodies; see docs/plugins.md.
func (Request) Body() ([]byte, error) { return readBody(FeatureBufferRequest, bodyKindRequest) }

// SetBody replaces the request body; only in OnRequest. Several calls in
// one phase append. The host fixes Content-Length.
func (Request) SetBody(body []byte) {
	EnableFeatures(FeatureBufferRequest)
	hst().WriteBody(bodyKindRequest, body)
}

// Response is the response: the upstream's in OnResponse, or the local
// answer being built in OnRequest. Only valid during the handler call.
type Response struct {
	isError bool
}

// IsError reports, in OnResponse, that the next handler failed (for example
// the upstream was unreachable); status and headers are the proxy's error
// response then.
func (r Response) IsError() bool { return r.isError }

// Status returns the response status code.
func (Response) Status() int { return int(hst().StatusCode()) }

// SetStatus sets the response status code.
func (Response) SetStatus(code int) { hst().SetStatusCode(uint32(code)) }

// Header returns the response headers.
func (Response) Header() Header { return Header{kind: headerKindResponse} }

// Trailer returns the response trailers (needs FeatureTrailers).
func (Response) Trailer() Header { return Header{kind: headerKindResponseTrailers} }

// Body returns the whole response body: in OnRequest what was written so
// far, in OnResponse the upstream's body, buffered on demand (enabling
// FeatureBufferResponse in Configure makes the host buffer it up front).
// The host caps buffered bodies.
func (Response) Body() ([]byte, error) { return readBody(FeatureBufferResponse, bodyKindResponse) }

// SetBody replaces the response body (the local answer in OnRequest, the
// upstream's body in OnResponse). Several calls in one phase append.
func (Response) SetBody(body []byte) { hst().WriteBody(bodyKindResponse, body) }

func readBody(f Feature, kind uint32) ([]byte, error) {
	if EnableFeatures(f)&f == 0 {
		return nil, ErrBufferingUnavailable
	}
	return hst().ReadBody(kind), nil
}

// Respond writes a local answer: status, headers (may be nil) and body. It
// returns Stop so a handler can end with `return sdk.Respond(...)`.
func Respond(resp Response, status int, headers map[string]string, body []byte) Action {
	resp.SetStatus(status)
	for k, v := range headers {
		resp.Header().Set(k, v)
	}
	resp.SetBody(body)
	return Stop
}

// RespondJSON writes a local JSON answer: v encoded as the body and
// Content-Type application/json. It returns Stop.
func RespondJSON(resp Response, status int, v any) Action {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"error":"internal error"}`)
		status = 500
	}
	body = append(body, '\n')
	return Respond(resp, status, map[string]string{"Content-Type": "application/json"}, body)
}

// RespondError writes a JSON error answer {"error": msg} and returns Stop.
func RespondError(resp Response, status int, msg string) Action {
	return RespondJSON(resp, status, map[string]string{"error": msg})
}

// Header is a header block of the request or the response. Names are case
// insensitive.
type Header struct {
	kind uint32
}

// Get returns the first value of name, or "".
func (h Header) Get(name string) string {
	vs := hst().HeaderValues(h.kind, name)
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// Values returns all values of name.
func (h Header) Values(name string) []string { return hst().HeaderValues(h.kind, name) }

// Has reports whether name is present.
func (h Header) Has(name string) bool { return len(hst().HeaderValues(h.kind, name)) > 0 }

// Set replaces all values of name with value.
func (h Header) Set(name, value string) { hst().SetHeader(h.kind, name, value) }

// Add appends value to name.
func (h Header) Add(name, value string) { hst().AddHeader(h.kind, name, value) }

// Del removes name.
func (h Header) Del(name string) { hst().RemoveHeader(h.kind, name) }

// Names returns the header names present.
func (h Header) Names() []string { return hst().HeaderNames(h.kind) }

// RemoveQueryParam returns the request URI without the named parameter,
// keeping the order and encoding of the others.
func RemoveQueryParam(uri, name string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	parts := strings.Split(query, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if k != name && p != "" {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}
