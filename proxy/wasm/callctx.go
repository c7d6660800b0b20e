package wasm

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of an instance's guest calls and the timer that
// stops them at their deadline. When it fires it ends the context (for host
// functions that wait on it, and for wazero's own watcher when that is on)
// and calls onFire, which interrupts the guest (see callguard.go). Unlike
// context.WithTimeout it is reused from call to call: one timer per
// instance, and a Done channel that is replaced only after it fired (which
// discards the instance anyway), so a guest call allocates nothing here.
type callCtx struct {
	mu       sync.Mutex
	ch       chan struct{}
	err      error
	armed    bool
	deadline time.Time
	timer    *time.Timer
	onFire   func(context.Context)
	// inst is the instance whose calls run with this context, for host
	// functions (Host.instanceOf). Set once before the first call.
	inst *instance
}

var _ context.Context = (*callCtx)(nil)

func newCallCtx(onFire func(context.Context)) *callCtx {
	c := &callCtx{ch: make(chan struct{}), onFire: onFire}
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Stop()
	return c
}

// arm starts a call with timeout d.
func (c *callCtx) arm(d time.Duration) {
	c.mu.Lock()
	if c.err != nil {
		c.ch, c.err = make(chan struct{}), nil
	}
	c.armed = true
	c.deadline = time.Now().Add(d)
	c.mu.Unlock()
	c.timer.Reset(d)
}

// disarm ends a call.
func (c *callCtx) disarm() {
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
	c.timer.Stop()
}

// fire runs on the timer goroutine. A late fire meant for an earlier call
// finds the deadline in the future and does nothing.
func (c *callCtx) fire() {
	c.mu.Lock()
	if !c.armed || time.Now().Before(c.deadline) {
		c.mu.Unlock()
		return
	}
	c.end(context.DeadlineExceeded)
}

// cancel ends the current call early (its caller went away); a no-op when
// no call is running.
func (c *callCtx) cancel() {
	c.mu.Lock()
	if !c.armed {
		c.mu.Unlock()
		return
	}
	c.end(context.Canceled)
}

// end ends the armed call with err. Called with c.mu held; releases it
// before onFire so host functions reading the context are not blocked.
func (c *callCtx) end(err error) {
	c.armed = false
	c.err = err
	close(c.ch)
	c.mu.Unlock()
	if c.onFire != nil {
		c.onFire(c)
	}
}

// stop releases the timer.
func (c *callCtx) stop() { c.timer.Stop() }

func (c *callCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, c.armed
}

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *callCtx) Value(any) any { return nil }
