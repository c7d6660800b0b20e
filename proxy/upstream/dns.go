package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// source is one configured endpoint address, before resolution.
type source struct {
	host, port string
	weight     int
	literal    bool // host is an IP address
}

func parseSources(eps []config.Endpoint) ([]source, error) {
	out := make([]source, 0, len(eps))
	for i, e := range eps {
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("endpoints[%d].address: want host:port, got %q", i, e.Address)
		}
		_, ipErr := netip.ParseAddr(host)
		out = append(out, source{host: host, port: port, weight: max(e.Weight, 1), literal: ipErr == nil})
	}
	return out, nil
}

func (c *Cluster) hasNames() bool {
	for _, s := range c.sources {
		if !s.literal {
			return true
		}
	}
	return false
}

// resolve turns the sources into endpoints: one per IP address of each
// name. Names resolving to IPv4 addresses use only those (like Envoy's
// V4_PREFERRED), so "localhost" does not also yield ::1. A name that fails
// to resolve keeps the addresses it had.
func (c *Cluster) resolve(ctx context.Context, r Resolver) []*endpoint {
	var out []*endpoint
	seen := map[string]bool{}
	add := func(addr, hostname string, w int) {
		if !seen[addr] {
			seen[addr] = true
			out = append(out, newEndpoint(addr, hostname, w))
		}
	}
	for _, s := range c.sources {
		if s.literal {
			add(net.JoinHostPort(s.host, s.port), "", s.weight)
			continue
		}
		ips, err := r.LookupIPAddr(ctx, s.host)
		if err != nil || len(ips) == 0 {
			c.log.Warn("resolve endpoint", zap.String("host", s.host), zap.Error(err))
			for _, e := range c.tab.Load().all {
				if _, port, _ := net.SplitHostPort(e.addr); e.hostname == s.host && port == s.port {
					add(e.addr, e.hostname, s.weight)
				}
			}
			continue
		}
		for _, ip := range preferV4(ips) {
			add(net.JoinHostPort(ip, s.port), s.host, s.weight)
		}
	}
	return out
}

func preferV4(ips []net.IPAddr) []string {
	var v4, v6 []string
	for _, ip := range ips {
		if ip.IP.To4() != nil {
			v4 = append(v4, ip.IP.String())
		} else {
			v6 = append(v6, ip.IP.String())
		}
	}
	if len(v4) > 0 {
		slices.Sort(v4)
		return v4
	}
	slices.Sort(v6)
	return v6
}

// dnsLoop re-resolves the cluster's names every dns_refresh until ctx ends.
func (c *Cluster) dnsLoop(ctx context.Context, r Resolver) {
	every := c.cfg.DNSRefresh
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, min(every, 10*time.Second))
		all := c.resolve(rctx, r)
		cancel()
		c.mu.Lock()
		if !c.closed && !sameAddrs(all, c.tab.Load().all) {
			c.log.Info("endpoints changed", zap.Strings("endpoints", addrs(all)))
			c.setEndpointsLocked(all)
		}
		c.mu.Unlock()
	}
}

func sameAddrs(a, b []*endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y *endpoint) bool { return x.addr == y.addr })
}

func addrs(eps []*endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.addr
	}
	return out
}
