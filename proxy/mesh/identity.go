package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// IdentityFilterKind is the builtin filter kind that hands the verified peer
// identity to the local app; Expand puts it first on the inbound route when
// mesh.inbound.identity_header is set.
const IdentityFilterKind = "mesh-identity"

// XFCCHeader is Envoy's header name; with it the value uses the XFCC form.
const XFCCHeader = "X-Forwarded-Client-Cert"

// IdentityConfig is the JSON config of a mesh-identity filter.
type IdentityConfig struct {
	// Header receives the peer's SPIFFE ID.
	Header string `json:"header"`
	// Self is this sidecar's SPIFFE ID (the By= element of XFCC).
	Self string `json:"self"`
}

// IdentityFilter removes Header from the request, whoever sent it, and sets
// it to the verified peer SPIFFE ID (x.Props.PeerID) when there is one. The
// app therefore sees the header only when this sidecar verified the caller.
type IdentityFilter struct {
	header string
	self   string
	xfcc   bool
}

var _ filter.Filter = (*IdentityFilter)(nil)

// NewIdentityFilter returns the filter for cfg.
func NewIdentityFilter(cfg IdentityConfig) (*IdentityFilter, error) {
	if cfg.Header == "" {
		return nil, errors.New("mesh: identity filter: header is required")
	}
	h := http.CanonicalHeaderKey(cfg.Header)
	return &IdentityFilter{header: h, self: cfg.Self, xfcc: strings.EqualFold(h, XFCCHeader)}, nil
}

// HandleRequest strips and sets the identity header; it always continues.
func (f *IdentityFilter) HandleRequest(_ context.Context, x *filter.Exchange) (bool, error) {
	x.Request.Header.Del(f.header)
	id := x.Props.PeerID
	if id == "" {
		return true, nil
	}
	if f.xfcc {
		v := "URI=" + id
		if f.self != "" {
			v = "By=" + f.self + ";" + v
		}
		x.Request.Header.Set(f.header, v)
		return true, nil
	}
	x.Request.Header.Set(f.header, id)
	return true, nil
}

// IdentityFactory builds mesh-identity filters.
func IdentityFactory() filter.Factory {
	return filter.FactoryFunc(func(_ context.Context, spec filter.Spec, _ filter.Deps) (filter.Filter, error) {
		var cfg IdentityConfig
		if len(spec.Config) > 0 && string(spec.Config) != "null" {
			if err := json.Unmarshal(spec.Config, &cfg); err != nil {
				return nil, fmt.Errorf("mesh: identity filter config: %w", err)
			}
		}
		return NewIdentityFilter(cfg)
	})
}

// RegisterFilters registers the mesh's builtin filter kinds.
func RegisterFilters(r *filter.Registry) {
	r.Register(IdentityFilterKind, IdentityFactory())
}

// PeerIDFromHeader extracts the caller's SPIFFE ID from an identity header
// value set by IdentityFilter (plain ID or XFCC form). Apps behind a sidecar
// use it.
func PeerIDFromHeader(v string) string {
	if strings.HasPrefix(v, "spiffe://") {
		return v
	}
	for _, part := range strings.Split(v, ";") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(part), "URI="); ok {
			return strings.Trim(id, `"`)
		}
	}
	return ""
}
