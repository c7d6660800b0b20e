package process

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/wasmgate/wasmgate/abi/pluginpb"
)

// maxIdleStreams bounds the idle Calls streams kept per plugin process.
const maxIdleStreams = 64

// streams is a pool of Calls streams to one plugin process. A call takes a
// stream, sends one Call, reads one Result and puts the stream back; a
// stream that failed or timed out is cancelled and dropped.
type streams struct {
	client pluginpb.FilterClient

	mu     sync.Mutex
	idle   []*callStream
	closed bool
}

type callStream struct {
	s      pluginpb.Filter_CallsClient
	cancel context.CancelFunc
}

var errStreamsClosed = errors.New("process: plugin streams closed")

func (p *streams) get() (*callStream, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errStreamsClosed
	}
	if n := len(p.idle); n > 0 {
		cs := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return cs, nil
	}
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := p.client.Calls(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return &callStream{s: s, cancel: cancel}, nil
}

func (p *streams) put(cs *callStream) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdleStreams {
		p.idle = append(p.idle, cs)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	cs.cancel()
}

// close cancels the idle streams; streams in use are cancelled when their
// call ends.
func (p *streams) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, cs := range idle {
		cs.cancel()
	}
}

// call runs one phase call on a pooled stream, bounded by ctx.
func (p *streams) call(ctx context.Context, c *pluginpb.Call) (*pluginpb.Result, error) {
	cs, err := p.get()
	if err != nil {
		return nil, err
	}
	// The stream outlives ctx; when ctx ends first the stream is cancelled
	// (and dropped), which ends the Send or Recv below.
	stop := context.AfterFunc(ctx, cs.cancel)
	res, err := cs.roundTrip(c)
	if !stop() {
		cs.cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if err != nil {
		cs.cancel()
		return nil, err
	}
	p.put(cs)
	if res.Error != "" {
		return nil, errors.New(res.Error)
	}
	return res, nil
}

func (cs *callStream) roundTrip(c *pluginpb.Call) (*pluginpb.Result, error) {
	if err := cs.s.Send(c); err != nil {
		return nil, err
	}
	return cs.s.Recv()
}
