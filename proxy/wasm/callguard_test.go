package wasm

import (
	"context"
	"testing"
	"time"
)

// TestCallGuardFastPath fails when a wazero upgrade moved what callguard.go
// relies on: calls would silently fall back to one goroutine each.
func TestCallGuardFastPath(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	p := buildGuest(t, h, guestHeader)
	if !h.fastCalls() {
		t.Fatal("guest calls run with wazero's per-call watcher goroutine; callguard.go no longer matches this wazero version")
	}
	i, err := p.pool.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.pool.release(i)
	sw := callWatcherSwitch(i.mod)
	if sw == nil || *sw {
		t.Fatalf("watcher switch = %v, want found and off", sw)
	}
	if !canInterrupt(i.mod) {
		t.Fatal("module instance lost CloseModuleOnCanceledOrTimeout")
	}
	// Host functions find their instance from the call context, and from
	// the module when called with another context.
	if h.instanceOf(i.cctx, i.mod) != i || h.instanceOf(context.Background(), i.mod) != i {
		t.Fatal("instanceOf does not find the calling instance")
	}

	// The point of the fast path, measured: the watcher goroutine and its
	// channel are allocations of every call. Turn the switch back on for a
	// moment (nothing else runs on this module) and compare.
	x := newExchange("GET", "/a")
	callOnce := func() {
		if err := i.call(i.handleReq, x, &i.scratch, phaseRequest); err != nil {
			t.Fatal(err)
		}
	}
	fast := testing.AllocsPerRun(200, callOnce)
	*sw = true
	watched := testing.AllocsPerRun(200, callOnce)
	*sw = false
	if watched < fast+2 {
		t.Fatalf("allocs per call: %.1f without the watcher, %.1f with it; want the watcher to cost at least 2", fast, watched)
	}
}

// TestCallGuardInterruptsLoop: with the watcher goroutine off, the
// instance's timer alone must stop a guest that never returns.
func TestCallGuardInterruptsLoop(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: 50 * time.Millisecond, PoolSize: 1})
	p := buildGuest(t, h, guestHostile)
	if !h.fastCalls() {
		t.Skip("fast path unavailable; TestCallGuardFastPath reports why")
	}
	start := time.Now()
	x := newExchange("GET", "/a", "X-Mode", "loop")
	_, err := p.HandleRequest(context.Background(), x)
	if err == nil {
		t.Fatal("looping guest returned without error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("loop stopped after %v, want about the 50ms call timeout", d)
	}
	if got := p.stats.timeouts.Load(); got != 1 {
		t.Fatalf("timeouts = %d, want 1 (err: %v)", got, err)
	}
}
