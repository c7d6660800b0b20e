// Package builtin holds filters written in plain Go and compiled into the
// binary. They are the native baseline the benchmarks compare Wasm and
// process plugins against, and handy for simple header edits.
package builtin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// KindHeaders is the kind name of the header filter.
const KindHeaders = "headers"

// HeadersConfig is the config of the headers filter.
type HeadersConfig struct {
	// RequestSet sets request headers.
	RequestSet map[string]string `json:"request_set"`
	// RequestRemove removes request headers.
	RequestRemove []string `json:"request_remove"`
	// ResponseSet sets response headers.
	ResponseSet map[string]string `json:"response_set"`
	// ResponseRemove removes response headers.
	ResponseRemove []string `json:"response_remove"`
}

// Validate checks the config.
func (c *HeadersConfig) Validate() error {
	for k := range c.RequestSet {
		if k == "" {
			return fmt.Errorf("request_set: empty header name")
		}
	}
	for k := range c.ResponseSet {
		if k == "" {
			return fmt.Errorf("response_set: empty header name")
		}
	}
	return nil
}

// Headers edits request and response headers.
type Headers struct {
	reqSet  [][2]string
	reqDel  []string
	respSet [][2]string
	respDel []string
}

var _ filter.ResponseFilter = (*Headers)(nil)

// NewHeaders builds a Headers filter from its JSON config.
func NewHeaders(raw json.RawMessage) (*Headers, error) {
	var c HeadersConfig
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("headers: config: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("headers: config: %w", err)
	}
	h := &Headers{}
	for k, v := range c.RequestSet {
		h.reqSet = append(h.reqSet, [2]string{http.CanonicalHeaderKey(k), v})
	}
	for k, v := range c.ResponseSet {
		h.respSet = append(h.respSet, [2]string{http.CanonicalHeaderKey(k), v})
	}
	for _, k := range c.RequestRemove {
		h.reqDel = append(h.reqDel, http.CanonicalHeaderKey(k))
	}
	for _, k := range c.ResponseRemove {
		h.respDel = append(h.respDel, http.CanonicalHeaderKey(k))
	}
	return h, nil
}

// HandleRequest applies the request edits.
func (h *Headers) HandleRequest(_ context.Context, x *filter.Exchange) (bool, error) {
	hd := x.Request.Header
	for _, kv := range h.reqSet {
		hd[kv[0]] = []string{kv[1]}
	}
	for _, k := range h.reqDel {
		delete(hd, k)
	}
	return true, nil
}

// HandleResponse applies the response edits.
func (h *Headers) HandleResponse(_ context.Context, x *filter.Exchange) error {
	hd := x.Response.Header
	for _, kv := range h.respSet {
		hd[kv[0]] = []string{kv[1]}
	}
	for _, k := range h.respDel {
		delete(hd, k)
	}
	return nil
}

// Register adds the builtin filters to r.
func Register(r *filter.Registry) {
	r.Register(KindHeaders, filter.FactoryFunc(func(_ context.Context, spec filter.Spec, _ filter.Deps) (filter.Filter, error) {
		return NewHeaders(spec.Config)
	}))
}
