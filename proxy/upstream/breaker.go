package upstream

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// breaker caps the requests in flight to a cluster. A request that finds no
// free slot waits for one if fewer than maxPending requests already wait,
// for at most pendingTimeout; otherwise it fails fast with ErrOverloaded.
// A nil *breaker admits everything.
type breaker struct {
	slots          chan struct{}
	maxPending     int64
	pendingTimeout time.Duration
	pending        atomic.Int64
}

func newBreaker(cb *config.CircuitBreaker) *breaker {
	if cb == nil || cb.MaxRequests <= 0 {
		return nil
	}
	return &breaker{
		slots:          make(chan struct{}, cb.MaxRequests),
		maxPending:     int64(cb.MaxPending),
		pendingTimeout: cb.PendingTimeout,
	}
}

// acquire takes a slot; release must be called once for each nil return.
func (b *breaker) acquire(ctx context.Context) error {
	if b == nil {
		return nil
	}
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	if b.pending.Add(1) > b.maxPending {
		b.pending.Add(-1)
		return ErrOverloaded
	}
	defer b.pending.Add(-1)
	t := time.NewTimer(b.pendingTimeout)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrOverloaded
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (b *breaker) release() {
	if b != nil {
		<-b.slots
	}
}

// open reports whether no slot is free.
func (b *breaker) open() bool {
	return b != nil && len(b.slots) == cap(b.slots)
}

// state is "open" or "closed", for the admin page.
func (b *breaker) state() string {
	if b.open() {
		return "open"
	}
	return "closed"
}

// waiting is the number of requests waiting for a slot.
func (b *breaker) waiting() int64 {
	if b == nil {
		return 0
	}
	return b.pending.Load()
}
