package wasm

import (
	"context"
	"testing"
	"time"
)

func TestHeaderGuestSmoke(t *testing.T) {
	h, _ := testHost(t, HostOptions{PoolSize: 2})
	start := time.Now()
	p := buildGuest(t, h, guestHeader)
	t.Logf("build took %v, stateless=%v", time.Since(start), p.stateless)
	x := newExchange("GET", "/a")
	next, err := p.HandleRequest(context.Background(), x)
	if err != nil || !next {
		t.Fatalf("next=%v err=%v", next, err)
	}
	if got := x.Request.Header.Get("X-Wasm"); got != "1" {
		t.Fatalf("X-Wasm = %q", got)
	}
}
