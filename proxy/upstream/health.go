package upstream

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
)

// healthUserAgent identifies active health check requests.
const healthUserAgent = "wasmgate-health-check"

// healthLoop checks every endpoint right away and then every interval
// (jittered by up to 10%) until ctx ends.
func (c *Cluster) healthLoop(ctx context.Context) {
	hc := c.cfg.HealthCheck
	for {
		c.checkAll(ctx)
		jitter := time.Duration(rand.Int64N(int64(hc.Interval)/10 + 1))
		t := time.NewTimer(hc.Interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) checkAll(ctx context.Context) {
	eps := c.tab.Load().all
	ok := make([]bool, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() { ok[i] = c.check(ctx, e) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	hc := c.cfg.HealthCheck
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	changed := false
	for i, e := range eps {
		up := e.hcUp.Load()
		if ok[i] {
			e.hcFail = 0
			e.hcOK++
			if !up && e.hcOK >= hc.HealthyThreshold {
				e.hcUp.Store(true)
				changed = true
				c.log.Info("endpoint healthy", zap.String("endpoint", e.addr))
			}
		} else {
			e.hcOK = 0
			e.hcFail++
			if up && e.hcFail >= hc.UnhealthyThreshold {
				e.hcUp.Store(false)
				changed = true
				c.log.Warn("endpoint unhealthy", zap.String("endpoint", e.addr), zap.Int("failures", e.hcFail))
			}
		}
	}
	if changed {
		c.rebuildLocked()
	}
}

// check sends one health check: GET path, healthy on any 2xx within the timeout.
func (c *Cluster) check(ctx context.Context, e *endpoint) bool {
	hc := c.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	u := &url.URL{Scheme: c.scheme, Host: e.addr, Path: hc.Path}
	if p, err := url.Parse(hc.Path); err == nil {
		u.Path, u.RawQuery = p.Path, p.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	if e.hostname != "" {
		_, port, _ := net.SplitHostPort(e.addr)
		req.Host = net.JoinHostPort(e.hostname, port)
	}
	req.Header.Set("User-Agent", healthUserAgent)
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		if ce := c.log.Check(zap.DebugLevel, "health check failed"); ce != nil {
			ce.Write(zap.String("endpoint", e.addr), zap.Error(err))
		}
		return false
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
