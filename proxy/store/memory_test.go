package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func closeStore(t testing.TB, s Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// storeContract runs the behaviour every backend shares.
func storeContract(t *testing.T, s Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, key string)
	}{
		{"incr starts window at first increment", func(t *testing.T, key string) {
			v, ttl, err := s.Incr(ctx, key, 1, time.Minute)
			if err != nil || v != 1 {
				t.Fatalf("incr = %d, %v; want 1", v, err)
			}
			if ttl <= 59*time.Second || ttl > time.Minute {
				t.Fatalf("ttl = %v, want about 1m", ttl)
			}
			v, ttl2, err := s.Incr(ctx, key, 5, time.Hour)
			if err != nil || v != 6 {
				t.Fatalf("second incr = %d, %v; want 6", v, err)
			}
			if ttl2 > ttl || ttl2 < 58*time.Second {
				t.Fatalf("second incr moved the window: ttl %v then %v", ttl, ttl2)
			}
			got, ok, err := s.Get(ctx, key)
			if err != nil || !ok || string(got) != "6" {
				t.Fatalf("get counter = %q %v %v; want \"6\"", got, ok, err)
			}
		}},
		{"negative delta refunds", func(t *testing.T, key string) {
			mustIncr(t, s, key, 3, time.Minute)
			if v := mustIncr(t, s, key, -1, time.Minute); v != 2 {
				t.Fatalf("after refund = %d, want 2", v)
			}
		}},
		{"window zero never expires", func(t *testing.T, key string) {
			if _, ttl, err := s.Incr(ctx, key, 1, 0); err != nil || ttl != 0 {
				t.Fatalf("incr = ttl %v, %v; want 0 ttl", ttl, err)
			}
		}},
		{"counter expires", func(t *testing.T, key string) {
			mustIncr(t, s, key, 7, 50*time.Millisecond)
			waitFor(t, 3*time.Second, func() bool {
				_, ok, err := s.Get(ctx, key)
				return err == nil && !ok
			})
			if v := mustIncr(t, s, key, 1, time.Minute); v != 1 {
				t.Fatalf("incr after expiry = %d, want a new window at 1", v)
			}
		}},
		{"set get delete", func(t *testing.T, key string) {
			if _, ok, err := s.Get(ctx, key); err != nil || ok {
				t.Fatalf("get missing = %v %v", ok, err)
			}
			buf := []byte("hello")
			if err := s.Set(ctx, key, buf, 0); err != nil {
				t.Fatal(err)
			}
			buf[0] = 'J' // the store keeps its own copy
			got, ok, err := s.Get(ctx, key)
			if err != nil || !ok || string(got) != "hello" {
				t.Fatalf("get = %q %v %v", got, ok, err)
			}
			if err := s.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Get(ctx, key); ok {
				t.Fatal("key still there after delete")
			}
		}},
		{"set with ttl expires", func(t *testing.T, key string) {
			if err := s.Set(ctx, key, []byte("v"), 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 3*time.Second, func() bool {
				_, ok, err := s.Get(ctx, key)
				return err == nil && !ok
			})
		}},
		{"incr on integer value", func(t *testing.T, key string) {
			if err := s.Set(ctx, key, []byte("41"), 0); err != nil {
				t.Fatal(err)
			}
			if v := mustIncr(t, s, key, 1, time.Minute); v != 42 {
				t.Fatalf("incr = %d, want 42", v)
			}
		}},
		{"incr on non-integer fails", func(t *testing.T, key string) {
			if err := s.Set(ctx, key, []byte("abc"), 0); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Incr(ctx, key, 1, time.Minute); err == nil {
				t.Fatal("incr on a string value succeeded")
			}
		}},
		{"concurrent increments are atomic", func(t *testing.T, key string) {
			const workers, each = 8, 250
			var wg sync.WaitGroup
			seen := make([]atomic.Bool, workers*each+1)
			for range workers {
				wg.Go(func() {
					for range each {
						v, _, err := s.Incr(ctx, key, 1, time.Minute)
						if err != nil {
							t.Error(err)
							return
						}
						if v < 1 || v > workers*each || seen[v].Swap(true) {
							t.Errorf("value %d returned twice or out of range", v)
						}
					}
				})
			}
			wg.Wait()
			got, _, _ := s.Get(ctx, key)
			if string(got) != strconv.Itoa(workers*each) {
				t.Fatalf("final = %s, want %d", got, workers*each)
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, fmt.Sprintf("contract:%s:%d:%d", t.Name(), i, time.Now().UnixNano()))
		})
	}
}

func mustIncr(t *testing.T, s Store, key string, delta int64, w time.Duration) int64 {
	t.Helper()
	v, _, err := s.Incr(context.Background(), key, delta, w)
	if err != nil {
		t.Fatalf("incr %q: %v", key, err)
	}
	return v
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMemoryContract(t *testing.T) {
	s := NewMemory()
	defer closeStore(t, s)
	storeContract(t, s)
}

func TestMemorySweeperDropsExpired(t *testing.T) {
	m := newMemory(10 * time.Millisecond)
	defer closeStore(t, m)
	ctx := context.Background()
	for i := range 100 {
		if _, _, err := m.Incr(ctx, fmt.Sprint("k", i), 1, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, "forever", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() bool { return m.size() == 1 })
	if _, ok, _ := m.Get(ctx, "forever"); !ok {
		t.Fatal("sweeper removed a key without expiry")
	}
}

func TestMemoryCloseIdempotentAndUsable(t *testing.T) {
	m := NewMemory()
	closeStore(t, m)
	closeStore(t, m)
	if v, _, err := m.Incr(context.Background(), "k", 1, time.Second); err != nil || v != 1 {
		t.Fatalf("incr after close = %d, %v", v, err)
	}
}

func TestNewPicksBackend(t *testing.T) {
	for _, kind := range []string{"", "memory"} {
		s, err := New(context.Background(), storeConfig(kind, nil), nil, nil)
		if err != nil {
			t.Fatalf("kind %q: %v", kind, err)
		}
		if _, ok := s.(*Memory); !ok {
			t.Fatalf("kind %q built %T, want *Memory", kind, s)
		}
		closeStore(t, s)
	}
	if _, err := New(context.Background(), storeConfig("etcd", nil), nil, nil); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, err := New(context.Background(), storeConfig("redis", nil), nil, nil); err == nil {
		t.Fatal("redis without address accepted")
	}
}

func TestErrNotIntegerWrapped(t *testing.T) {
	m := NewMemory()
	defer closeStore(t, m)
	ctx := context.Background()
	_ = m.Set(ctx, "s", []byte("x"), 0)
	if _, _, err := m.Incr(ctx, "s", 1, 0); !errors.Is(err, ErrNotInteger) {
		t.Fatalf("err = %v, want ErrNotInteger", err)
	}
}

func BenchmarkMemoryIncr(b *testing.B) {
	m := NewMemory()
	defer closeStore(b, m)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("rl:consumer-%d:1700000000", i)
	}
	ctx := context.Background()
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, _, err := m.Incr(ctx, keys[i&1023], 1, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMemoryIncrOneKey(b *testing.B) {
	m := NewMemory()
	defer closeStore(b, m)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := m.Incr(ctx, "rl:hot", 1, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestIsLocal(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"local:x", true},
		{"wasm/rate-limit/local:rate-limit:a:1", true},
		{"wasm/rate-limit/rate-limit:a:1", false},
		{"wasm/rate-limit/rate-limit:a:5.x/y/local:z", false},
		{"x/local:y", false},
		{"plain", false},
		{"wasm/rl/", false},
	}
	for _, tc := range tests {
		if got := IsLocal(tc.key); got != tc.want {
			t.Errorf("IsLocal(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}
