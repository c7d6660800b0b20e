package wasm

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPoolExhausted is returned when no instance became free within the
// plugin's pool wait; the chain then applies the filter's failure policy.
var ErrPoolExhausted = errors.New("wasm: instance pool exhausted")

// ErrClosed is returned by a plugin that was closed.
var ErrClosed = errors.New("wasm: plugin closed")

// pool is a bounded set of warm instances of one plugin. Instances are made
// at build time and, after a discard, in the background; never on the
// request path.
type pool struct {
	free  chan *instance
	size  int
	wait  time.Duration
	spawn func(ctx context.Context) (*instance, error)
	onErr func(error)

	inUse   atomic.Int64
	waiting atomic.Int64

	closed    chan struct{}
	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func newPool(size int, wait time.Duration, spawn func(context.Context) (*instance, error), onErr func(error)) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{
		free:   make(chan *instance, size),
		size:   size,
		wait:   wait,
		spawn:  spawn,
		onErr:  onErr,
		closed: make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
}

// fill instantiates instances until the pool holds size of them, starting
// with the ones already made (given). It is used at build time.
func (p *pool) fill(ctx context.Context, given ...*instance) error {
	for _, i := range given {
		p.free <- i
	}
	for n := len(given); n < p.size; n++ {
		i, err := p.spawn(ctx)
		if err != nil {
			return err
		}
		p.free <- i
	}
	return nil
}

// acquire takes a free instance, waiting at most p.wait.
func (p *pool) acquire(ctx context.Context) (*instance, error) {
	select {
	case i := <-p.free:
		p.inUse.Add(1)
		return i, nil
	default:
	}
	select {
	case <-p.closed:
		return nil, ErrClosed
	default:
	}
	if p.wait <= 0 {
		return nil, ErrPoolExhausted
	}
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case i := <-p.free:
		p.inUse.Add(1)
		return i, nil
	case <-t.C:
		return nil, ErrPoolExhausted
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.closed:
		return nil, ErrClosed
	}
}

// release returns a healthy instance to the pool.
func (p *pool) release(i *instance) {
	p.inUse.Add(-1)
	select {
	case <-p.closed:
		i.close()
		return
	default:
	}
	p.free <- i // never blocks: at most size instances exist
	// Close may have drained the pool between the check and the send.
	select {
	case <-p.closed:
		p.drain()
	default:
	}
}

// discard throws a broken instance away and replaces it in the background.
func (p *pool) discard(i *instance) {
	p.inUse.Add(-1)
	i.close()
	select {
	case <-p.closed:
		return
	default:
	}
	p.wg.Add(1)
	go p.replace()
}

// replace makes one new instance, retrying with backoff until it succeeds
// or the pool closes.
func (p *pool) replace() {
	defer p.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		i, err := p.spawn(p.ctx)
		if err == nil {
			select {
			case <-p.closed:
				i.close()
			default:
				p.free <- i
				select {
				case <-p.closed:
					p.drain()
				default:
				}
			}
			return
		}
		if p.onErr != nil && p.ctx.Err() == nil {
			p.onErr(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-p.closed:
			t.Stop()
			return
		case <-t.C:
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

func (p *pool) drain() {
	for {
		select {
		case i := <-p.free:
			i.close()
		default:
			return
		}
	}
}

// close stops replacements, closes idle instances and waits for background
// work; instances in use are closed when they come back.
func (p *pool) close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.cancel()
	})
	p.wg.Wait()
	p.drain()
}
