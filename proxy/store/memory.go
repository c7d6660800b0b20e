package store

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"
)

const (
	// memShards is the number of independently locked maps; a power of two.
	memShards = 64
	// defaultSweepInterval is how often the sweeper drops expired entries.
	defaultSweepInterval = 5 * time.Second
)

// Memory is the in-process store: sharded maps with per-key expiry. Expired
// entries are invisible at once (checked on access) and removed by a
// background sweeper that Close stops. The zero value is not usable; call
// NewMemory.
type Memory struct {
	seed   maphash.Seed
	base   time.Time // monotonic origin for expiry times
	shards [memShards]memShard

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memShard struct {
	mu sync.Mutex
	m  map[string]*memEntry
	_  [48]byte // pad to 64 bytes: shards on separate cache lines
}

// memEntry is a counter (counter=true, n) or a byte value (val).
type memEntry struct {
	n       int64
	val     []byte
	counter bool
	exp     int64 // nanoseconds since Memory.base; 0 = no expiry
}

// NewMemory returns a memory store with its sweeper running.
func NewMemory() *Memory { return newMemory(defaultSweepInterval) }

func newMemory(sweep time.Duration) *Memory {
	m := &Memory{
		seed: maphash.MakeSeed(),
		base: time.Now(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memEntry)
	}
	go m.sweeper(sweep)
	return m
}

func (m *Memory) now() int64 { return int64(time.Since(m.base)) }

func (m *Memory) shard(key string) *memShard {
	return &m.shards[maphash.String(m.seed, key)&(memShards-1)]
}

// live returns the entry for key if it exists and has not expired.
func (s *memShard) live(key string, now int64) *memEntry {
	e, ok := s.m[key]
	if !ok || (e.exp != 0 && e.exp <= now) {
		return nil
	}
	return e
}

// Incr adds delta to the counter key. A missing or expired key starts a new
// window of length window (0 = no expiry) at value 0; a key that exists
// without expiry gets one, as the Redis script does.
func (m *Memory) Incr(_ context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	now := m.now()
	s := m.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	switch {
	case !ok:
		e = &memEntry{counter: true}
		s.m[key] = e
	case e.exp != 0 && e.exp <= now:
		*e = memEntry{counter: true}
	case !e.counter:
		n, err := strconv.ParseInt(string(e.val), 10, 64)
		if err != nil {
			s.mu.Unlock()
			return 0, 0, fmt.Errorf("store: incr %q: %w", key, ErrNotInteger)
		}
		e.n, e.val, e.counter = n, nil, true
	}
	if e.exp == 0 && window > 0 {
		e.exp = now + int64(window)
	}
	e.n += delta
	n, exp := e.n, e.exp
	s.mu.Unlock()
	var ttl time.Duration
	if exp != 0 {
		ttl = time.Duration(exp - now)
	}
	return n, ttl, nil
}

// Get returns a copy of the value of key; a counter reads as its decimal
// value, as in Redis.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(key, m.now())
	if e == nil {
		return nil, false, nil
	}
	if e.counter {
		return strconv.AppendInt(nil, e.n, 10), true, nil
	}
	return append([]byte{}, e.val...), true, nil
}

// Set stores a copy of val under key with a TTL (0 = no expiry).
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	e := &memEntry{val: append([]byte{}, val...)}
	if ttl > 0 {
		e.exp = m.now() + int64(ttl)
	}
	s := m.shard(key)
	s.mu.Lock()
	s.m[key] = e
	s.mu.Unlock()
	return nil
}

// Delete removes key.
func (m *Memory) Delete(_ context.Context, key string) error {
	s := m.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Close stops the sweeper. The store keeps answering afterwards (expired keys
// stay invisible) so a late request on a retired snapshot never fails.
func (m *Memory) Close(ctx context.Context) error {
	m.closeOnce.Do(func() { close(m.stop) })
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store: close memory: %w", ctx.Err())
	}
}

func (m *Memory) sweeper(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep removes expired entries, one shard at a time so requests on other
// shards never wait.
func (m *Memory) sweep() {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		now := m.now()
		for k, e := range s.m {
			if e.exp != 0 && e.exp <= now {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// size counts stored entries, expired or not (for tests).
func (m *Memory) size() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
