package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wasmgate/wasmgate/internal/redistest"
	"github.com/wasmgate/wasmgate/proxy/config"
)

const testProbe = 50 * time.Millisecond

type redisFixture struct {
	store *Redis
	reg   *prometheus.Registry
	logs  *observer.ObservedLogs
}

func newRedisStore(t *testing.T, addr, policy string) *redisFixture {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	s, err := NewRedis(context.Background(), config.Redis{
		Address:       addr,
		Timeout:       200 * time.Millisecond, // generous for -race on 2 shared cores
		FailurePolicy: policy,
	}, RedisOptions{Logger: zap.New(core), Registerer: reg, ProbeInterval: testProbe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore(t, s) })
	return &redisFixture{store: s, reg: reg, logs: logs}
}

func TestRedisContract(t *testing.T) {
	addr, _, _ := redistest.Start(t)
	f := newRedisStore(t, addr, "fail_closed")
	if !f.store.Up() {
		t.Fatal("store not up with a running redis")
	}
	storeContract(t, f.store)
}

func TestRedisKeysArePrefixedAndExpire(t *testing.T) {
	addr, _, _ := redistest.Start(t)
	f := newRedisStore(t, addr, "fail_closed")
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	ctx := context.Background()
	if _, _, err := f.store.Incr(ctx, "rl:a", 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := raw.Get(ctx, "wasmgate:rl:a").Result(); err != nil || got != "3" {
		t.Fatalf("raw GET wasmgate:rl:a = %q, %v", got, err)
	}
	if ttl, err := raw.PTTL(ctx, "wasmgate:rl:a").Result(); err != nil || ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("raw PTTL = %v, %v; want the window set on first increment", ttl, err)
	}
	// A key that lost its expiry gets one again on the next increment.
	if err := raw.Persist(ctx, "wasmgate:rl:a").Err(); err != nil {
		t.Fatal(err)
	}
	if _, ttl, err := f.store.Incr(ctx, "rl:a", 1, 5*time.Second); err != nil || ttl <= 0 {
		t.Fatalf("incr on persisted key: ttl %v, %v", ttl, err)
	}
	// local: keys never reach Redis.
	if _, _, err := f.store.Incr(ctx, "wasm/rl/"+LocalPrefix+"x", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.Exists(ctx, "wasmgate:wasm/rl/"+LocalPrefix+"x").Result(); err != nil || n != 0 {
		t.Fatalf("local key found in redis: %d, %v", n, err)
	}
}

func TestRedisIncrAtomicAcrossStores(t *testing.T) {
	addr, _, _ := redistest.Start(t)
	a := newRedisStore(t, addr, "fail_closed").store
	b := newRedisStore(t, addr, "fail_closed").store
	const workers, each = 8, 100
	seen := make([]atomic.Bool, 2*workers*each+1)
	var wg sync.WaitGroup
	for i := range 2 * workers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range each {
				v, _, err := s.Incr(context.Background(), "shared", 1, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if v < 1 || int(v) >= len(seen) || seen[v].Swap(true) {
					t.Errorf("value %d duplicated or out of range", v)
				}
			}
		})
	}
	wg.Wait()
	if v := mustIncr(t, a, "shared", 0, time.Minute); v != 2*workers*each {
		t.Fatalf("total = %d, want %d", v, 2*workers*each)
	}
}

func TestRedisServerErrorDoesNotMarkDown(t *testing.T) {
	addr, _, _ := redistest.Start(t)
	f := newRedisStore(t, addr, "fail_open")
	ctx := context.Background()
	if err := f.store.Set(ctx, "str", []byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.Incr(ctx, "str", 1, time.Minute); err == nil {
		t.Fatal("INCRBY on a string succeeded")
	}
	if !f.store.Up() {
		t.Fatal("a Redis error reply marked the store down")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := f.store.Incr(cctx, "k", 1, time.Minute); err == nil {
		t.Fatal("incr with a canceled context succeeded")
	}
	if !f.store.Up() {
		t.Fatal("a caller's canceled context marked the store down")
	}
}

// TestRedisOutage kills Redis under load and checks each policy, the metrics,
// that the outage logs once per state change, and the recovery.
func TestRedisOutage(t *testing.T) {
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			addr, stop, restart := redistest.Start(t)
			f := newRedisStore(t, addr, policy)
			peer := newRedisStore(t, addr, policy).store
			ctx := context.Background()

			var ok, unavailable, other atomic.Int64
			load, stopLoad := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := 0; load.Err() == nil; i++ {
						_, _, err := f.store.Incr(ctx, fmt.Sprintf("load:%d:%d", w, i%16), 1, time.Minute)
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, ErrUnavailable):
							unavailable.Add(1)
						default:
							other.Add(1)
						}
						time.Sleep(time.Millisecond)
					}
				})
			}
			waitFor(t, 5*time.Second, func() bool { return ok.Load() > 20 })
			stop()
			waitFor(t, 5*time.Second, func() bool { return !f.store.Up() })
			before := ok.Load() + unavailable.Load()
			waitFor(t, 5*time.Second, func() bool { return ok.Load()+unavailable.Load() > before+50 })

			// A degraded store answers at once: no per-request timeout.
			start := time.Now()
			for range 100 {
				_, _, _ = f.store.Incr(ctx, "fast", 1, time.Minute)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("100 increments while down took %v", d)
			}
			v, _, err := f.store.Incr(ctx, "outage-key", 1, time.Minute)
			switch policy {
			case "fail_open":
				if err != nil || v != 1 {
					t.Fatalf("fail_open incr while down = %d, %v; want local 1", v, err)
				}
				if n := metricValue(t, f.store.metrics.fallback.WithLabelValues("incr")); n < 50 {
					t.Errorf("wasmgate_store_fallback_total{op=incr} = %v, want >= 50", n)
				}
			case "fail_closed":
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("fail_closed incr while down: err = %v, want ErrUnavailable", err)
				}
				if unavailable.Load() < 50 {
					t.Errorf("only %d ErrUnavailable under load", unavailable.Load())
				}
				// Local keys keep working: a plugin's own fallback.
				if v, _, err := f.store.Incr(ctx, "wasm/rl/"+LocalPrefix+"k", 1, time.Minute); err != nil || v != 1 {
					t.Fatalf("local key while down = %d, %v", v, err)
				}
			}
			if up := metricValue(t, f.store.metrics.up); up != 0 {
				t.Errorf("wasmgate_store_redis_up = %v while down", up)
			}

			restart()
			waitFor(t, 10*time.Second, func() bool { return f.store.Up() && peer.Up() })
			stopLoad()
			wg.Wait()
			if other.Load() != 0 {
				t.Errorf("%d errors other than ErrUnavailable", other.Load())
			}
			if up := metricValue(t, f.store.metrics.up); up != 1 {
				t.Errorf("wasmgate_store_redis_up = %v after recovery", up)
			}
			// Global again: both stores count on the same key.
			mustIncr(t, f.store, "after", 1, time.Minute)
			if v := mustIncr(t, peer, "after", 1, time.Minute); v != 2 {
				t.Fatalf("after recovery the peer sees %d, want 2 (shared counter)", v)
			}
			down := f.logs.FilterMessageSnippet("unreachable").Len()
			up := f.logs.FilterMessageSnippet("reachable; counters are global").Len()
			if down != 1 || up != 2 {
				t.Errorf("log lines: %d down, %d up; want 1 down and 2 up (start, recovery): %v", down, up, f.logs.All())
			}
		})
	}
}

func TestRedisStartsDownAndRecovers(t *testing.T) {
	addr, stop, restart := redistest.Start(t)
	stop()
	f := newRedisStore(t, addr, "fail_open")
	if f.store.Up() {
		t.Fatal("store up with redis stopped")
	}
	if v := mustIncr(t, f.store, "k", 1, time.Minute); v != 1 {
		t.Fatalf("local incr = %d", v)
	}
	restart()
	waitFor(t, 10*time.Second, f.store.Up)
	if v := mustIncr(t, f.store, "k", 5, time.Minute); v != 5 {
		t.Fatalf("incr after recovery = %d, want 5 (redis counter, not local)", v)
	}
}

func TestRedisMetricsReRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		s, err := NewRedis(context.Background(), config.Redis{Address: "127.0.0.1:1"},
			RedisOptions{Registerer: reg, ProbeInterval: time.Hour})
		if err != nil {
			t.Fatalf("second store on the same registry: %v", err)
		}
		closeStore(t, s)
	}
	if _, err := NewRedis(context.Background(), config.Redis{Address: "127.0.0.1:1", FailurePolicy: "maybe"}, RedisOptions{}); err == nil {
		t.Fatal("bad failure policy accepted")
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Counter != nil:
		return out.Counter.GetValue()
	}
	t.Fatalf("metric %v is neither gauge nor counter", m.Desc())
	return 0
}

func BenchmarkRedisIncr(b *testing.B) {
	addr, _, _ := redistest.Start(b)
	s, err := NewRedis(context.Background(), config.Redis{Address: addr, Timeout: time.Second}, RedisOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer closeStore(b, s)
	ctx := context.Background()
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprint("bench:", next.Add(1))
		for pb.Next() {
			if _, _, err := s.Incr(ctx, key, 1, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRedisSlowCommands pauses Redis (CLIENT PAUSE): one timeout fails that
// command by policy but keeps the store up; timeouts in a row mark it down.
func TestRedisSlowCommands(t *testing.T) {
	addr, _, _ := redistest.Start(t)
	s, err := NewRedis(context.Background(), config.Redis{Address: addr, Timeout: 50 * time.Millisecond, FailurePolicy: "fail_closed"},
		RedisOptions{ProbeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	ctx := context.Background()
	mustIncr(t, s, "warm", 1, time.Minute)

	raw := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 5 * time.Second})
	defer raw.Close()
	// pause holds every client's commands for d; it is in effect once
	// CLIENT PAUSE answers. The returned wait blocks until it is over (a
	// PING is held like the rest).
	pause := func(d time.Duration) (wait func()) {
		if err := raw.ClientPause(ctx, d).Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
		return func() {
			if err := raw.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING after pause: %v", err)
			}
		}
	}

	wait := pause(300 * time.Millisecond)
	if _, _, err := s.Incr(ctx, "k", 1, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("incr while Redis is paused: %v, want ErrUnavailable", err)
	}
	if !s.Up() {
		t.Fatal("one timeout marked the store down")
	}
	wait()
	mustIncr(t, s, "k", 1, time.Minute)

	wait = pause(600 * time.Millisecond)
	for range timeoutsToDown {
		_, _, _ = s.Incr(ctx, "k", 1, time.Minute)
	}
	if s.Up() {
		t.Fatalf("%d timeouts in a row left the store up", timeoutsToDown)
	}
	wait()
}
