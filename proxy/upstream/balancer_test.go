package upstream

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

func TestBalancerDistribution(t *testing.T) {
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	tests := []struct {
		name     string
		balancer string
		weights  []int
		n        int
		hold     bool // keep response bodies open so load builds up
		want     map[string]int
		atLeast  int // instead of want: every backend gets at least this many
	}{
		{name: "round robin even", balancer: RoundRobin, weights: []int{1, 1, 1}, n: 300, want: map[string]int{"a": 100, "b": 100, "c": 100}},
		{name: "round robin weighted", balancer: RoundRobin, weights: []int{3, 1, 0}, n: 100, want: map[string]int{"a": 75, "b": 25}},
		{name: "least request spreads held load", balancer: LeastRequest, weights: []int{1, 1, 1}, n: 9, hold: true, want: map[string]int{"a": 3, "b": 3, "c": 3}},
		{name: "least request honours weight", balancer: LeastRequest, weights: []int{2, 1, 0}, n: 9, hold: true, want: map[string]int{"a": 6, "b": 3}},
		{name: "p2c spreads held load", balancer: P2C, weights: []int{1, 1, 0}, n: 10, hold: true, want: map[string]int{"a": 5, "b": 5}},
		{name: "p2c random when idle", balancer: P2C, weights: []int{1, 1, 1}, n: 300, atLeast: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := config.Cluster{Name: "c", Balancer: tt.balancer}
			for i, w := range tt.weights {
				if w > 0 {
					cl.Endpoints = append(cl.Endpoints, config.Endpoint{Address: bs[i].addr(), Weight: w})
				}
			}
			c := newSet(t, Options{}, cl).Cluster("c")
			got := map[string]int{}
			var held []io.Closer
			for range tt.n {
				resp, err := c.RoundTrip(newReq(t, http.MethodGet, "/"))
				if err != nil {
					t.Fatal(err)
				}
				got[resp.Header.Get("X-Backend")]++
				if tt.hold {
					held = append(held, resp.Body)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			for _, h := range held {
				h.Close()
			}
			if tt.want != nil {
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("distribution = %v, want %v", got, tt.want)
				}
				return
			}
			for _, b := range bs {
				if got[b.name] < tt.atLeast {
					t.Fatalf("distribution = %v, want at least %d each", got, tt.atLeast)
				}
			}
			if c.active.Load() != 0 {
				t.Fatalf("active = %d after all bodies closed", c.active.Load())
			}
		})
	}
}

func TestConsistentHashSticky(t *testing.T) {
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	addrs := []string{bs[0].addr(), bs[1].addr(), bs[2].addr()}
	tests := []struct {
		name   string
		policy config.HashPolicy
		keyed  func(r *http.Request, key string) *http.Request
	}{
		{name: "header", policy: config.HashPolicy{Header: "X-User"}, keyed: func(r *http.Request, k string) *http.Request {
			r.Header.Set("X-User", k)
			return r
		}},
		{name: "cookie", policy: config.HashPolicy{Cookie: "session"}, keyed: func(r *http.Request, k string) *http.Request {
			r.AddCookie(&http.Cookie{Name: "session", Value: k})
			return r
		}},
		{name: "client ip from remote addr", policy: config.HashPolicy{ClientIP: true}, keyed: func(r *http.Request, k string) *http.Request {
			r.RemoteAddr = "10.0.0." + k + ":1234"
			return r
		}},
		{name: "client ip from filter exchange", policy: config.HashPolicy{ClientIP: true}, keyed: func(r *http.Request, k string) *http.Request {
			x := filter.NewExchange(r, filter.Properties{ClientIP: "10.1.0." + k})
			r.RemoteAddr = "127.0.0.1:9" // must be ignored
			return r.WithContext(filter.WithExchange(r.Context(), x))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := cluster("c", addrs...)
			cl.Balancer, cl.Hash = ConsistentHash, &tt.policy
			c := newSet(t, Options{}, cl).Cluster("c")
			seen := map[string]bool{}
			for k := range 40 {
				key := strconv.Itoa(k + 1)
				first := ""
				for range 4 {
					r := do(c, tt.keyed(newReq(t, http.MethodGet, "/"), key))
					if r.err != nil {
						t.Fatal(r.err)
					}
					if first == "" {
						first = r.backend
					} else if r.backend != first {
						t.Fatalf("key %s went to %s then %s", key, first, r.backend)
					}
				}
				seen[first] = true
			}
			if len(seen) != 3 {
				t.Fatalf("40 keys reached only %v", seen)
			}
		})
	}
}

func TestConsistentHashRemapsOnlyRemovedEndpoint(t *testing.T) {
	eps := []*endpoint{newEndpoint("10.0.0.1:80", "", 1), newEndpoint("10.0.0.2:80", "", 1), newEndpoint("10.0.0.3:80", "", 1)}
	full := newTable(eps, eps, true)
	less := newTable(eps, []*endpoint{eps[0], eps[2]}, true)
	moved := 0
	for k := range 2000 {
		h := hashString("user-" + strconv.Itoa(k))
		before, after := pickRing(full, h, nil), pickRing(less, h, nil)
		if before != eps[1] && before != after {
			moved++
		}
		if after == eps[1] {
			t.Fatal("removed endpoint picked")
		}
	}
	if moved != 0 {
		t.Fatalf("%d keys of remaining endpoints moved", moved)
	}
}

func TestRoundRobinSkipsPreviousEndpoint(t *testing.T) {
	eps := []*endpoint{newEndpoint("10.0.0.1:80", "", 1), newEndpoint("10.0.0.2:80", "", 1)}
	c := &Cluster{balancer: RoundRobin}
	tab := newTable(eps, eps, false)
	for range 10 {
		if got := c.pick(tab, nil, eps[0]); got != eps[1] {
			t.Fatalf("picked %s, want the other endpoint", got.addr)
		}
	}
}
