package upstream

import (
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// Balancer names accepted in config.Cluster.Balancer.
const (
	RoundRobin     = "round_robin"
	LeastRequest   = "least_request"
	P2C            = "p2c"
	ConsistentHash = "consistent_hash"
)

const (
	// maxSchedule caps the weighted round-robin schedule length.
	maxSchedule = 4096
	// vnodesPerWeight is the number of ring points per unit of weight.
	vnodesPerWeight = 100
	// maxVnodes caps the ring points of one endpoint.
	maxVnodes = 10000
)

// table is an immutable view of a cluster's endpoints, rebuilt whenever the
// set of endpoints or their availability changes.
type table struct {
	all   []*endpoint
	avail []*endpoint
	sched []int32     // weighted round-robin order over avail
	ring  []ringPoint // consistent-hash ring over avail, sorted by hash
}

type ringPoint struct {
	hash uint64
	idx  int32
}

func newTable(all, avail []*endpoint, hashRing bool) *table {
	t := &table{all: all, avail: avail}
	t.sched = schedule(avail)
	if hashRing {
		t.ring = buildRing(avail)
	}
	return t
}

// schedule returns a smooth weighted round-robin order of avail (nginx's
// algorithm), so weights 3:1 give a a b a rather than a a a b.
func schedule(avail []*endpoint) []int32 {
	if len(avail) == 0 {
		return nil
	}
	w := make([]int, len(avail))
	total := 0
	for i, e := range avail {
		w[i] = max(e.weight, 1)
		total += w[i]
	}
	if total > maxSchedule {
		// Scale down, keeping at least one slot each.
		scaled := 0
		for i := range w {
			w[i] = max(w[i]*maxSchedule/total, 1)
			scaled += w[i]
		}
		total = scaled
	}
	cur := make([]int, len(avail))
	out := make([]int32, 0, total)
	for range total {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, int32(best))
	}
	return out
}

func buildRing(avail []*endpoint) []ringPoint {
	var ring []ringPoint
	for i, e := range avail {
		n := min(max(e.weight, 1)*vnodesPerWeight, maxVnodes)
		for v := range n {
			ring = append(ring, ringPoint{hash: hashString(e.addr + "#" + strconv.Itoa(v)), idx: int32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return ring
}

// hashString is FNV-1a 64 followed by a murmur3 finalizer: stable across
// processes (so every proxy instance maps a key to the same endpoint) and
// free of allocations.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// pick chooses an endpoint for req from t.avail, preferring one other than
// avoid (the endpoint of the previous try) when there is a choice.
func (c *Cluster) pick(t *table, req *http.Request, avoid *endpoint) *endpoint {
	n := len(t.avail)
	switch n {
	case 0:
		return nil
	case 1:
		return t.avail[0]
	}
	switch c.balancer {
	case LeastRequest:
		return pickLeast(t.avail, avoid, int(c.rr.Add(1)))
	case P2C:
		return pickP2C(t.avail, avoid)
	case ConsistentHash:
		if key, ok := c.hashKey(req); ok {
			return pickRing(t, hashString(key), avoid)
		}
	}
	return c.pickRR(t, avoid)
}

func (c *Cluster) pickRR(t *table, avoid *endpoint) *endpoint {
	i := c.rr.Add(1)
	l := uint64(len(t.sched))
	e := t.avail[t.sched[i%l]]
	if e == avoid {
		for k := uint64(1); k < l; k++ {
			if x := t.avail[t.sched[(i+k)%l]]; x != avoid {
				return x
			}
		}
	}
	return e
}

// pickLeast scans all endpoints for the fewest active requests per unit of
// weight; ties go round robin (start is a rotating offset).
func pickLeast(avail []*endpoint, avoid *endpoint, start int) *endpoint {
	var best *endpoint
	var bestLoad float64
	n := len(avail)
	for k := range n {
		e := avail[(start+k)%n]
		if e == avoid {
			continue
		}
		load := float64(e.active.Load()) / float64(max(e.weight, 1))
		if best == nil || load < bestLoad {
			best, bestLoad = e, load
		}
	}
	return best
}

// pickP2C draws two distinct endpoints at random and keeps the less loaded.
func pickP2C(avail []*endpoint, avoid *endpoint) *endpoint {
	n := len(avail)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := avail[i], avail[j]
	if a == avoid {
		return b
	}
	if b == avoid {
		return a
	}
	la := float64(a.active.Load()) / float64(max(a.weight, 1))
	lb := float64(b.active.Load()) / float64(max(b.weight, 1))
	if lb < la {
		return b
	}
	return a
}

// pickRing walks the ring clockwise from h to the first endpoint that is not avoid.
func pickRing(t *table, h uint64, avoid *endpoint) *endpoint {
	ring := t.ring
	i, _ := slices.BinarySearchFunc(ring, h, func(p ringPoint, h uint64) int {
		switch {
		case p.hash < h:
			return -1
		case p.hash > h:
			return 1
		}
		return 0
	})
	for k := range len(ring) {
		e := t.avail[ring[(i+k)%len(ring)].idx]
		if e != avoid {
			return e
		}
	}
	return t.avail[ring[i%len(ring)].idx]
}

// hashKey returns the consistent-hash key of req: the configured header,
// cookie or client IP, in that order of preference.
func (c *Cluster) hashKey(req *http.Request) (string, bool) {
	hp := c.hash
	if hp == nil {
		return "", false
	}
	if hp.Header != "" {
		if v := req.Header.Get(hp.Header); v != "" {
			return v, true
		}
	}
	if hp.Cookie != "" {
		if ck, err := req.Cookie(hp.Cookie); err == nil && ck.Value != "" {
			return ck.Value, true
		}
	}
	if hp.ClientIP {
		if ip := clientIP(req); ip != "" {
			return ip, true
		}
	}
	return "", false
}

// clientIP is the downstream client's IP: the filter exchange's property when
// the request carries one, else the host part of RemoteAddr.
func clientIP(req *http.Request) string {
	if x := filter.FromContext(req.Context()); x != nil && x.Props.ClientIP != "" {
		return x.Props.ClientIP
	}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		return host
	}
	return req.RemoteAddr
}
