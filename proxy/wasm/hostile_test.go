package wasm

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// hostileTimeout cuts the looping guests; it is long enough that a normal
// call on a loaded 2-core box does not hit it.
const hostileTimeout = 500 * time.Millisecond

func hostileChain(p *plugin, policy filter.FailurePolicy) *filter.Chain {
	return &filter.Chain{Entries: []filter.Entry{{Name: "hostile", Kind: "wasm", Filter: p, FailurePolicy: policy}}}
}

// serve runs x through c with a fake upstream that answers 200 "up".
func serve(c *filter.Chain, x *filter.Exchange) (upstreamCalled bool) {
	ctx := context.Background()
	ran, next := c.RunRequest(ctx, x)
	if next {
		upstreamCalled = true
		x.Response.StatusCode = 200
		x.Response.Body = io.NopCloser(strings.NewReader("up"))
	}
	c.RunResponse(ctx, x, ran)
	return upstreamCalled
}

// waitFull waits until the pool holds all its instances again.
func waitFull(t testing.TB, p *plugin) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(p.pool.free) != p.pool.size || p.pool.inUse.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pool did not refill: idle %d of %d, in use %d", len(p.pool.free), p.pool.size, p.pool.inUse.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// healthy checks that an ordinary request still passes the plugin.
func healthy(t testing.TB, p *plugin) {
	t.Helper()
	x := newExchange("GET", "/ok")
	if !serve(hostileChain(p, filter.FailClosed), x) || x.Request.Header.Get("X-Hostile") != "ok" {
		t.Fatalf("plugin stopped serving: status %d, decisions %+v", x.Response.StatusCode, x.Decisions)
	}
}

func TestHostileGuests(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: hostileTimeout, PoolSize: 2, PoolWait: 5 * time.Second})
	// A small memory limit so "grow" hits it well within the call timeout.
	p := buildGuest(t, h, guestHostile, withName("hostile"), withSettings("memory_limit_mib", "8"))
	if !p.stateless {
		t.Fatal("hostile guest declared itself stateless")
	}
	tests := []struct {
		mode     string
		respond  bool   // the failure is in handle_response
		replaced bool   // the instance must be thrown away
		errHas   string // in the plugin's last error
	}{
		{mode: "loop", replaced: true, errHas: "call timeout"},
		{mode: "loop-resp", respond: true, replaced: true, errHas: "call timeout"},
		{mode: "grow", replaced: true, errHas: "memory limit"},
		{mode: "trap-req", replaced: true, errHas: "hostile: trap in handle_request"},
		{mode: "trap-resp", respond: true, replaced: true, errHas: "hostile: trap in handle_response"},
		{mode: "bigheader", errHas: "header bytes written in one call"},
		{mode: "badptr-write", errHas: "get_uri: buffer [4294967280, +2) is outside guest memory"},
		{mode: "badptr-read", errHas: "set_header_value name: range [4294967280, +100) is outside guest memory"},
		{mode: "badptr-prop", errHas: "get_property name"},
		{mode: "badptr-counter", errHas: "counter_incr out"},
		{mode: "badkind", errHas: "unknown header kind 9"},
		{mode: "badstatus", errHas: "invalid status 42"},
		{mode: "badheader", errHas: `invalid value for header "X-Bad"`},
		{mode: "badnext", errHas: "next=7"},
	}
	for _, tc := range tests {
		for _, policy := range []filter.FailurePolicy{filter.FailClosed, filter.FailOpen} {
			t.Run(tc.mode+"/"+string(policy), func(t *testing.T) {
				before := p.stats.replaced.Load()
				x := newExchange("GET", "/h", "X-Mode", tc.mode)
				up := serve(hostileChain(p, policy), x)
				switch {
				case policy == filter.FailOpen:
					if !up || x.Response.StatusCode != 200 {
						t.Fatalf("fail_open: upstream=%v status=%d, want the request to go on", up, x.Response.StatusCode)
					}
				case tc.respond:
					if !up || x.Response.StatusCode != 502 {
						t.Fatalf("fail_closed in response: upstream=%v status=%d, want 502", up, x.Response.StatusCode)
					}
				default:
					if up || x.Response.StatusCode != 503 {
						t.Fatalf("fail_closed: upstream=%v status=%d, want 503 without upstream", up, x.Response.StatusCode)
					}
				}
				if msg, _ := p.stats.lastError(); !strings.Contains(msg, tc.errHas) {
					t.Fatalf("last error = %q, want it to contain %q", msg, tc.errHas)
				}
				if got := p.stats.replaced.Load() - before; (got == 1) != tc.replaced {
					t.Fatalf("replaced %d instances, want replaced=%v", got, tc.replaced)
				}
				waitFull(t, p)
				healthy(t, p)
			})
		}
	}

	t.Run("bad log pointer is ignored", func(t *testing.T) {
		// The spec: a host that fails to log ignores the message.
		x := newExchange("GET", "/h", "X-Mode", "badptr-len")
		if !serve(hostileChain(p, filter.FailClosed), x) || x.Request.Header.Get("X-Hostile") != "ok" {
			t.Fatalf("status %d", x.Response.StatusCode)
		}
	})
	t.Run("local answer", func(t *testing.T) {
		x := newExchange("GET", "/h", "X-Mode", "respond")
		if serve(hostileChain(p, filter.FailClosed), x) || x.Response.StatusCode != 403 {
			t.Fatalf("status %d, want 403 without upstream", x.Response.StatusCode)
		}
	})
	if st := h.Plugins()[0]; st.Timeouts < 4 || st.Traps < 6 || st.Violations < 16 {
		t.Errorf("status counters = %+v", st)
	}
}

// TestHostileCheapCallsBounded sends 10,000 misbehaving requests that the
// host survives without discarding the instance (ABI violations): nothing
// may grow, and the same instances keep serving.
func TestHostileCheapCallsBounded(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 2})
	p := buildGuest(t, h, guestHostile)
	c := hostileChain(p, filter.FailClosed)
	// bigheader is left out: it legitimately copies 1 MiB of headers per call.
	modes := []string{"badptr-write", "badptr-read", "badkind", "badstatus", "badheader", "badnext", "badptr-prop", "badptr-counter"}
	healthy(t, p)
	base := heapInUse()
	goroutines := runtime.NumGoroutine()
	const n = 10000
	for k := 0; k < n; k++ {
		x := newExchange("GET", "/h", "X-Mode", modes[k%len(modes)])
		if serve(c, x) || x.Response.StatusCode != 503 {
			t.Fatalf("call %d (%s): status %d, want 503", k, modes[k%len(modes)], x.Response.StatusCode)
		}
	}
	if got := p.stats.violations.Load(); got != n {
		t.Errorf("violations = %d, want %d", got, n)
	}
	if got := p.stats.replaced.Load(); got != 0 {
		t.Errorf("replaced %d instances; violations must keep them", got)
	}
	for j := 0; j < p.pool.size; j++ {
		i := <-p.pool.free
		if sz := i.mem.Size(); sz > 8<<20 {
			t.Errorf("guest memory grew to %d bytes", sz)
		}
		defer func() { p.pool.free <- i }()
	}
	if grown := heapInUse() - base; grown > 16<<20 {
		t.Errorf("host heap grew by %d bytes over %d hostile calls", grown, n)
	}
	if g := runtime.NumGoroutine(); g > goroutines+4 {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}
}

// TestHostileTrapsReplaced traps repeatedly: every instance is replaced in
// the background, the pool stays at its size, nothing leaks.
func TestHostileTrapsReplaced(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 2, PoolWait: 10 * time.Second})
	p := buildGuest(t, h, guestHostile)
	c := hostileChain(p, filter.FailClosed)
	n := 24 // each replacement instantiates a Go guest (slow under -race)
	if testing.Short() {
		n = 8
	}
	healthy(t, p)
	waitFull(t, p)
	base := heapInUse()
	goroutines := runtime.NumGoroutine()
	for k := 0; k < n; k++ {
		mode := []string{"trap-req", "grow"}[k%2]
		x := newExchange("GET", "/h", "X-Mode", mode)
		if serve(c, x) || x.Response.StatusCode != 503 {
			t.Fatalf("call %d: status %d, want 503", k, x.Response.StatusCode)
		}
		healthy(t, p) // waits for a replacement when both are gone
	}
	waitFull(t, p)
	if got := p.stats.replaced.Load(); got != uint64(n) {
		t.Errorf("replaced = %d, want %d", got, n)
	}
	if grown := heapInUse() - base; grown > 32<<20 {
		t.Errorf("host heap grew by %d bytes over %d traps", grown, n)
	}
	if g := runtime.NumGoroutine(); g > goroutines+4 {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func TestBadSignatureRefused(t *testing.T) {
	h, _ := testHost(t, HostOptions{})
	_, err := tryBuild(t, h, guestBadSig)
	if err == nil || !strings.Contains(err.Error(), `export "handle_request" has signature (i32) -> (i32), want () -> (i64)`) {
		t.Fatalf("err = %v, want a message naming handle_request and both signatures", err)
	}
	st := h.Plugins()
	if len(st) != 1 || st[0].State != "failed" || !strings.Contains(st[0].LastError, "handle_request") {
		t.Fatalf("/plugins = %+v, want the failed build", st)
	}
}
