package upstream

import (
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// endpoint is one upstream address (an IP and port). Its state survives DNS
// refreshes that keep the address.
type endpoint struct {
	addr     string // "ip:port", the URL host and the key
	hostname string // configured DNS name, "" for a literal IP
	weight   int

	active atomic.Int64 // tries in flight, bodies included
	hcUp   atomic.Bool  // active health check verdict (true without checks)

	cons5xx     atomic.Int32
	consConnect atomic.Int32

	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected

	// guarded by Cluster.mu
	ejections  int // ejections in a row; the next lasts base × (ejections+1)
	ejectTimer *time.Timer
	hcOK       int // consecutive passing checks (health goroutine only)
	hcFail     int // consecutive failing checks (health goroutine only)
}

func newEndpoint(addr, hostname string, weight int) *endpoint {
	e := &endpoint{addr: addr, hostname: hostname, weight: weight}
	e.hcUp.Store(true)
	return e
}

// available reports whether the endpoint may take traffic at time now.
func (e *endpoint) available(now int64) bool {
	return e.hcUp.Load() && e.ejectedUntil.Load() <= now
}

// serverName is the TLS server name to present to this endpoint when the
// cluster does not configure one.
func (e *endpoint) serverName() string {
	if e.hostname != "" {
		return e.hostname
	}
	host, _, _ := net.SplitHostPort(e.addr)
	return host
}

func nowNano() int64 { return time.Now().UnixNano() }

// maxEjection caps one ejection's duration.
const maxEjection = 5 * time.Minute

// outcome is what one try produced, as the outlier detector sees it.
type outcome int

const (
	outcomeOK outcome = iota
	outcome5xx
	outcomeConnect
	outcomeIgnore // canceled by the client or our own timeout of a healthy peer
)

// record feeds one try's outcome to passive outlier detection.
func (c *Cluster) record(e *endpoint, o outcome) {
	od := c.outlier
	if od == nil {
		return
	}
	switch o {
	case outcomeOK:
		if e.cons5xx.Load() != 0 {
			e.cons5xx.Store(0)
		}
		if e.consConnect.Load() != 0 {
			e.consConnect.Store(0)
		}
		if u := e.ejectedUntil.Load(); u != 0 && nowNano()-u >= int64(od.BaseEjection) {
			c.forgetEjections(e)
		}
	case outcome5xx:
		if int(e.cons5xx.Add(1)) >= od.Consecutive5xx {
			c.eject(e, "consecutive_5xx")
		}
	case outcomeConnect:
		if int(e.consConnect.Add(1)) >= od.ConsecutiveConnectErrors {
			c.eject(e, "consecutive_connect_errors")
		}
	}
}

// forgetEjections resets the ejection multiplier once the endpoint has served
// successfully for one base ejection time after coming back.
func (c *Cluster) forgetEjections(e *endpoint) {
	now := nowNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	until := e.ejectedUntil.Load()
	if until == 0 || until > now {
		return
	}
	if now-until >= int64(c.outlier.BaseEjection) {
		e.ejections = 0
		e.ejectedUntil.Store(0)
	}
}

// eject takes e out of rotation for base × ejection count, unless that would
// eject more than max_ejection_percent of the endpoints (one endpoint of a
// cluster of two or more may always be ejected).
func (c *Cluster) eject(e *endpoint, reason string) {
	now := nowNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.ejectedUntil.Load() > now || c.closed {
		return
	}
	t := c.tab.Load()
	ejected := 0
	for _, x := range t.all {
		if x.ejectedUntil.Load() > now {
			ejected++
		}
	}
	total := len(t.all)
	allowed := (ejected+1)*100 <= c.outlier.MaxEjectionPercent*total || (ejected == 0 && total > 1)
	if !allowed {
		return
	}
	e.ejections++
	d := min(time.Duration(e.ejections)*c.outlier.BaseEjection, max(maxEjection, c.outlier.BaseEjection))
	e.ejectedUntil.Store(now + int64(d))
	e.cons5xx.Store(0)
	e.consConnect.Store(0)
	c.m.ejections.Inc()
	if ce := c.log.Check(zap.WarnLevel, "endpoint ejected"); ce != nil {
		ce.Write(zap.String("endpoint", e.addr), zap.String("reason", reason),
			zap.Duration("for", d), zap.Int("ejections", e.ejections))
	}
	if e.ejectTimer != nil {
		e.ejectTimer.Stop()
	}
	e.ejectTimer = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		c.log.Info("endpoint returned from ejection", zap.String("endpoint", e.addr))
		c.rebuildLocked()
	})
	c.rebuildLocked()
}

// rebuildLocked recomputes the available endpoints. c.mu must be held.
func (c *Cluster) rebuildLocked() {
	old := c.tab.Load()
	now := nowNano()
	avail := make([]*endpoint, 0, len(old.all))
	for _, e := range old.all {
		if e.available(now) {
			avail = append(avail, e)
		}
	}
	c.tab.Store(newTable(old.all, avail, c.balancer == ConsistentHash))
}

// setEndpointsLocked replaces the endpoint list (after DNS resolution),
// keeping the state of addresses that stay. c.mu must be held.
func (c *Cluster) setEndpointsLocked(all []*endpoint) {
	old := c.tab.Load()
	keep := make(map[string]*endpoint, len(old.all))
	for _, e := range old.all {
		keep[e.addr] = e
	}
	for i, e := range all {
		if prev, ok := keep[e.addr]; ok {
			all[i] = prev
			delete(keep, e.addr)
		}
	}
	for _, gone := range keep {
		if gone.ejectTimer != nil {
			gone.ejectTimer.Stop()
		}
	}
	c.tab.Store(&table{all: all})
	c.rebuildLocked()
}
