package upstream

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// shadowSuffix is appended to the host of mirrored requests, as Envoy does,
// so the shadow can tell them apart.
const shadowSuffix = "-shadow"

// hopHeaders are not copied to mirrored requests.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// Mirror sends a copy of req to the shadow cluster m.Cluster for m.Percent
// percent of calls (0 means 100), in the background: the shadow's response
// is read and discarded and nothing about it reaches the client. Call it
// with the outbound request before sending it upstream.
//
// The copy has the same method, URL path and query, and headers (hop-by-hop
// headers removed), and its Host gets "-shadow" appended (before the port).
// A body is copied only when it is replayable (req.GetBody is set, as when a
// filter buffered it); a request whose body is streaming is not mirrored at
// all (counted as skipped_body), because sending it without its body would
// mislead the shadow and teeing it would tie the main request to the shadow's
// speed. At most MirrorMaxInFlight copies per shadow cluster are in flight;
// more are dropped (dropped_full). Mirror never blocks on the network.
func (s *Set) Mirror(req *http.Request, m config.Mirror) {
	c := s.clusters[m.Cluster]
	if c == nil {
		return
	}
	if p := m.Percent; p > 0 && p < 100 && rand.Float64()*100 >= p {
		return
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		c.m.mirrorBody.Inc()
		return
	}
	select {
	case c.mirrorSlots <- struct{}{}:
	default:
		c.m.mirrorFull.Inc()
		return
	}
	var body io.ReadCloser
	if hasBody {
		b, err := req.GetBody()
		if err != nil {
			<-c.mirrorSlots
			c.m.mirrorErr.Inc()
			return
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.MirrorTimeout)
	ctx = WithCallOptions(ctx, CallOptions{Retry: noRetry})
	out := req.Clone(ctx)
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Body = body
	if body == nil {
		out.Body, out.ContentLength = nil, 0
	}
	out.GetBody = nil
	out.RequestURI = ""
	out.Host = shadowHost(req)
	s.goMu.RLock()
	defer s.goMu.RUnlock()
	if s.closed {
		cancel()
		<-c.mirrorSlots
		return
	}
	s.wg.Go(func() {
		defer func() { <-c.mirrorSlots }()
		defer cancel()
		resp, err := c.RoundTrip(out)
		if err != nil {
			c.m.mirrorErr.Inc()
			if ce := c.log.Check(zap.DebugLevel, "mirror failed"); ce != nil {
				ce.Write(zap.Error(err))
			}
			return
		}
		c.m.mirrorSent.Inc()
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	})
}

// noRetry is the retry policy of mirrored requests: one try.
var noRetry = &config.Retry{Attempts: 1}

// shadowHost returns req's host with "-shadow" appended before any port.
func shadowHost(req *http.Request) string {
	h := req.Host
	if h == "" && req.URL != nil {
		h = req.URL.Host
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		return net.JoinHostPort(host+shadowSuffix, port)
	}
	return h + shadowSuffix
}
