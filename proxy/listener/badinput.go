package listener

import (
	"net/http"
	"net/netip"
	"strings"
)

// validHost checks a request's Host (or :authority) beyond what net/http
// checks (allowed characters): an optional port must be a number up to
// 65535, IPv6 literals must be bracketed and well formed, and a port needs a
// host. Empty is valid (HTTP/1.0 requests may omit Host; net/http rejects a
// missing Host on HTTP/1.1 itself).
func validHost(h string) bool {
	if h == "" {
		return true
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, rest := h[1:end], h[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if !validPort(port) {
				return false
			}
		}
		a, err := netip.ParseAddr(host)
		return err == nil && a.Is6()
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if !validPort(port) {
			return false
		}
	}
	return host != "" && !strings.ContainsAny(host, ":[]")
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		// "host:" with an empty port is allowed by RFC 3986 but no client
		// sends it; refusing it keeps routing keys unambiguous.
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// badRequest answers a request the listener refuses before the handler.
func badRequest(w http.ResponseWriter, r *http.Request, msg string) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, "400 Bad Request: "+msg, http.StatusBadRequest)
}
