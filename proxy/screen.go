package proxy

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/pathnorm"
	"github.com/wasmgate/wasmgate/proxy/router"
)

// screen prepares the client's request before anything reads it: it drops
// the hop-by-hop headers the client named and puts the path in normal
// form. It runs before routing, tracing and every filter, so that what a
// filter or the proxy adds afterwards is never taken away by the client's
// Connection header, and the path routes match is the path the upstream
// gets. A non-nil error is a path refused (400).
func screen(r *http.Request, p *config.Paths) error {
	stripHopByHop(r.Header)
	return normalizePath(r, p)
}

// stripHopByHop removes the headers the client's Connection header lists,
// and the Connection header itself (RFC 9110 section 7.6.1). httputil.
// ReverseProxy does the same on the outgoing request, but after the
// filters: "Connection: x-consumer" would then remove the X-Consumer header
// that api-key set. Two names stay for ReverseProxy, which treats them
// itself: Upgrade (a WebSocket handshake: Connection becomes exactly
// "Upgrade") and TE (it forwards "TE: trailers" and nothing else).
func stripHopByHop(h http.Header) {
	conn, ok := h["Connection"]
	if !ok {
		return
	}
	upgrade := false
	for _, f := range conn {
		for sf := range strings.SplitSeq(f, ",") {
			sf = textproto.TrimString(sf)
			switch {
			case sf == "":
			case strings.EqualFold(sf, "upgrade"):
				upgrade = true
			case strings.EqualFold(sf, "te"):
			default:
				h.Del(sf)
			}
		}
	}
	if upgrade {
		h["Connection"] = []string{"Upgrade"}
	} else {
		delete(h, "Connection")
	}
}

// normalizePath rewrites r.URL to the normal form of the path the client
// sent (see proxy/pathnorm and the paths settings).
func normalizePath(r *http.Request, p *config.Paths) error {
	raw := r.RequestURI
	if raw == "" || raw[0] != '/' {
		raw = r.URL.EscapedPath() // absolute form, or a request built in-process
	} else if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	out, err := pathnorm.Normalize(raw, pathOptions(p))
	if err != nil {
		return err
	}
	if out == raw {
		return nil
	}
	dec, err := url.PathUnescape(out)
	if err != nil {
		return err // cannot happen: Normalize's output is well formed
	}
	r.URL.Path, r.URL.RawPath = dec, out
	return nil
}

func pathOptions(p *config.Paths) pathnorm.Options {
	o := pathnorm.Options{
		MergeSlashes:  p.MergeSlashes == nil || *p.MergeSlashes,
		RejectChanges: p.Action == config.PathReject,
	}
	switch p.EscapedSlashes {
	case config.SlashesKeep:
		o.EscapedSlashes = pathnorm.Keep
	case config.SlashesReject:
		o.EscapedSlashes = pathnorm.Reject
	}
	return o
}

// connectRefused reports whether r is a CONNECT that its route does not
// allow (routes.allow_connect): a tunnel would carry bytes no filter sees.
func connectRefused(r *http.Request, rt *router.Route) bool {
	return r.Method == http.MethodConnect && (rt == nil || !rt.Config.AllowConnect)
}

// refuseConnect answers a refused CONNECT.
func refuseConnect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	writeErrorFor(w, r, http.StatusMethodNotAllowed, "CONNECT is not allowed")
}
