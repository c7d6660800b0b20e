package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

const (
	// DefaultKeyPrefix namespaces every key wasmgate writes to Redis.
	DefaultKeyPrefix = "wasmgate:"
	// DefaultProbeInterval is how often the health probe PINGs Redis.
	DefaultProbeInterval = time.Second
	// defaultRedisTimeout bounds one command when the config leaves it unset.
	defaultRedisTimeout = 50 * time.Millisecond
	// timeoutsToDown is how many command timeouts in a row mark Redis down.
	timeoutsToDown = 3
)

// incrScript increments a counter and starts its window on the first
// increment (or on a key that lost its expiry), atomically. It returns the
// new value and the milliseconds left (-1: no expiry).
var incrScript = redis.NewScript(`
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
local w = tonumber(ARGV[2])
if ttl == -1 and w > 0 then
  redis.call('PEXPIRE', KEYS[1], w)
  ttl = w
end
return {v, ttl}
`)

// RedisOptions are the process-side settings of a Redis store.
type RedisOptions struct {
	// Logger receives one line per state change (down, up), named "redis"
	// below it. Default no-op.
	Logger *zap.Logger
	// Registerer receives the store metrics; nil disables them.
	Registerer prometheus.Registerer
	// ProbeInterval is how often Redis is PINGed, to notice an outage without
	// traffic and a recovery while degraded. Default DefaultProbeInterval.
	ProbeInterval time.Duration
	// KeyPrefix is prepended to every key. Default DefaultKeyPrefix.
	KeyPrefix string
}

// Redis is a Store backed by Redis: counters and values are shared by every
// proxy instance that uses the same Redis. When Redis is unreachable the
// store is "down": commands no longer go to Redis (no per-request timeouts)
// and the failure policy applies — fail_open serves from a local memory
// store, fail_closed returns ErrUnavailable. A probe loop brings it back up.
type Redis struct {
	client   *redis.Client
	prefix   string
	timeout  time.Duration
	failOpen bool
	local    *Memory
	up       atomic.Bool
	timeouts atomic.Int32 // command timeouts in a row
	log      *zap.Logger
	metrics  *redisMetrics

	probeEvery time.Duration
	stop       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

var redisLogOnce sync.Once

// NewRedis connects to cfg.Address, probes it once and starts the probe loop.
// An unreachable Redis is not an error: the store starts down and recovers.
func NewRedis(ctx context.Context, cfg config.Redis, opts RedisOptions) (*Redis, error) {
	if cfg.Address == "" {
		return nil, errors.New("store: redis address is required")
	}
	policy := cfg.FailurePolicy
	if policy == "" {
		policy = "fail_open"
	}
	if policy != "fail_open" && policy != "fail_closed" {
		return nil, fmt.Errorf("store: redis failure_policy must be fail_open or fail_closed, got %q", policy)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("redis")
	redisLogOnce.Do(func() { redis.SetLogger(clientLogger{log.Named("client")}) })

	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultRedisTimeout
	}
	probe := opts.ProbeInterval
	if probe <= 0 {
		probe = DefaultProbeInterval
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	m, err := newRedisMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	client := redis.NewClient(&redis.Options{
		Addr:     cfg.Address,
		Password: cfg.Password,
		DB:       cfg.DB,
		PoolSize: cfg.PoolSize, // 0: go-redis default, 10 per GOMAXPROCS
		// One try per command: a failure switches the store to its policy
		// instead of stacking retries onto the request's latency.
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           max(timeout, 250*time.Millisecond),
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	r := &Redis{
		client:     client,
		prefix:     prefix,
		timeout:    timeout,
		failOpen:   policy == "fail_open",
		local:      NewMemory(),
		log:        log.With(zap.String("address", cfg.Address), zap.String("failure_policy", policy)),
		metrics:    m,
		probeEvery: probe,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	m.up.Set(0)
	if err := r.ping(ctx); err != nil {
		r.log.Warn("redis unreachable at start; serving by failure policy until it answers", zap.Error(err))
	} else {
		r.markUp()
	}
	go r.probeLoop()
	return r, nil
}

// cmdCtx bounds one command by the store's timeout, or by the caller's own
// deadline when that comes first (a Wasm guest call's): then ctx is used
// as is, which spares a derived context and its goroutine per command.
func (r *Redis) cmdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= r.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.timeout)
}

// Up reports whether the store currently sends commands to Redis.
func (r *Redis) Up() bool { return r.up.Load() }

// Incr adds delta to the counter key atomically in Redis (INCRBY, and PEXPIRE
// on the first increment) and returns the new value and the window left.
func (r *Redis) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	if IsLocal(key) {
		return r.local.Incr(ctx, key, delta, window)
	}
	if r.up.Load() {
		ms := window.Milliseconds()
		if window > 0 && ms == 0 {
			ms = 1
		}
		cctx, cancel := r.cmdCtx(ctx)
		res, err := incrScript.Run(cctx, r.client, []string{r.prefix + key}, delta, ms).Int64Slice()
		cancel()
		if err == nil {
			r.ok()
			if len(res) != 2 {
				r.metrics.errors.WithLabelValues("incr").Inc()
				return 0, 0, fmt.Errorf("store: redis incr %q: unexpected script reply %v", key, res)
			}
			var ttl time.Duration
			if res[1] > 0 {
				ttl = time.Duration(res[1]) * time.Millisecond
			}
			return res[0], ttl, nil
		}
		if !r.failed(ctx, err) {
			r.metrics.errors.WithLabelValues("incr").Inc()
			return 0, 0, fmt.Errorf("store: redis incr %q: %w", key, err)
		}
	}
	if err := r.degraded("incr"); err != nil {
		return 0, 0, err
	}
	return r.local.Incr(ctx, key, delta, window)
}

// Get returns the value of key.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if IsLocal(key) {
		return r.local.Get(ctx, key)
	}
	if r.up.Load() {
		cctx, cancel := r.cmdCtx(ctx)
		val, err := r.client.Get(cctx, r.prefix+key).Bytes()
		cancel()
		switch {
		case err == nil:
			r.ok()
			return val, true, nil
		case errors.Is(err, redis.Nil):
			r.ok()
			return nil, false, nil
		case !r.failed(ctx, err):
			r.metrics.errors.WithLabelValues("get").Inc()
			return nil, false, fmt.Errorf("store: redis get %q: %w", key, err)
		}
	}
	if err := r.degraded("get"); err != nil {
		return nil, false, err
	}
	return r.local.Get(ctx, key)
}

// Set stores val under key with a TTL (0 = no expiry).
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if IsLocal(key) {
		return r.local.Set(ctx, key, val, ttl)
	}
	if r.up.Load() {
		if ttl > 0 && ttl < time.Millisecond {
			ttl = time.Millisecond
		}
		cctx, cancel := r.cmdCtx(ctx)
		err := r.client.Set(cctx, r.prefix+key, val, ttl).Err()
		cancel()
		if err == nil {
			r.ok()
			return nil
		}
		if !r.failed(ctx, err) {
			r.metrics.errors.WithLabelValues("set").Inc()
			return fmt.Errorf("store: redis set %q: %w", key, err)
		}
	}
	if err := r.degraded("set"); err != nil {
		return err
	}
	return r.local.Set(ctx, key, val, ttl)
}

// Delete removes key.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if IsLocal(key) {
		return r.local.Delete(ctx, key)
	}
	if r.up.Load() {
		cctx, cancel := r.cmdCtx(ctx)
		err := r.client.Del(cctx, r.prefix+key).Err()
		cancel()
		if err == nil {
			r.ok()
			return nil
		}
		if !r.failed(ctx, err) {
			r.metrics.errors.WithLabelValues("delete").Inc()
			return fmt.Errorf("store: redis delete %q: %w", key, err)
		}
	}
	if err := r.degraded("delete"); err != nil {
		return err
	}
	return r.local.Delete(ctx, key)
}

// Close stops the probe loop, the local fallback and the connection pool.
func (r *Redis) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		close(r.stop)
		select {
		case <-r.done:
		case <-ctx.Done():
		}
		r.closeErr = errors.Join(r.local.Close(ctx), r.client.Close())
		if r.closeErr != nil {
			r.closeErr = fmt.Errorf("store: close redis: %w", r.closeErr)
		}
	})
	return r.closeErr
}

// failed reports whether err means Redis could not serve the command; the
// caller then applies the failure policy to it. A connection error marks
// the store down at once; timeouts do after timeoutsToDown in a row, so one
// slow command does not switch every request to the fallback. Errors that
// Redis answered with (wrong type, script errors) and a caller that gave up
// (its own context) do not count.
func (r *Redis) failed(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !strings.HasPrefix(rerr.Error(), "LOADING") {
		return false
	}
	if isTimeout(err) && r.timeouts.Add(1) < timeoutsToDown {
		return true
	}
	r.markDown(err)
	return true
}

// ok records a command that Redis served.
func (r *Redis) ok() {
	if r.timeouts.Load() != 0 {
		r.timeouts.Store(0)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// degraded applies the failure policy to one operation while Redis is down:
// nil means "serve it from the local store".
func (r *Redis) degraded(op string) error {
	if r.failOpen {
		r.metrics.fallback.WithLabelValues(op).Inc()
		return nil
	}
	r.metrics.errors.WithLabelValues(op).Inc()
	return fmt.Errorf("store: redis %s: %w", op, ErrUnavailable)
}

func (r *Redis) markDown(err error) {
	if r.up.CompareAndSwap(true, false) {
		r.metrics.up.Set(0)
		r.log.Warn("redis unreachable; applying failure policy until it answers", zap.Error(err))
	}
}

func (r *Redis) markUp() {
	if r.up.CompareAndSwap(false, true) {
		r.timeouts.Store(0)
		r.metrics.up.Set(1)
		r.log.Info("redis reachable; counters are global")
	}
}

func (r *Redis) ping(ctx context.Context) error {
	// A probe may need a fresh connection (dial and handshake), so it gets
	// more time than one command, but never more than the probe interval.
	ctx, cancel := context.WithTimeout(ctx, min(max(r.timeout, 500*time.Millisecond), r.probeEvery))
	defer cancel()
	return r.client.Ping(ctx).Err()
}

func (r *Redis) probeLoop() {
	defer close(r.done)
	t := time.NewTicker(r.probeEvery)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if err := r.ping(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.markDown(err)
		} else {
			r.markUp()
		}
	}
}

// clientLogger routes go-redis's own log lines (dial failures, one per
// attempt) to debug level, so an outage logs once per state change.
type clientLogger struct{ log *zap.Logger }

func (l clientLogger) Printf(_ context.Context, format string, v ...any) {
	if ce := l.log.Check(zap.DebugLevel, "go-redis"); ce != nil {
		ce.Write(zap.String("msg", fmt.Sprintf(format, v...)))
	}
}

// redisMetrics are the store's Prometheus metrics.
type redisMetrics struct {
	up       prometheus.Gauge
	fallback *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newRedisMetrics(reg prometheus.Registerer) (*redisMetrics, error) {
	m := &redisMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmgate_store_redis_up",
			Help: "1 when the Redis store sends commands to Redis, 0 while it is down and the failure policy applies.",
		}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_store_fallback_total",
			Help: "Store operations served by the local fallback because Redis was unreachable (fail_open).",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_store_errors_total",
			Help: "Store operations that returned an error to the plugin (fail_closed outage or Redis error reply).",
		}, []string{"op"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.up, err = observe.Register(reg, m.up); err != nil {
		return nil, err
	}
	if m.fallback, err = observe.Register(reg, m.fallback); err != nil {
		return nil, err
	}
	if m.errors, err = observe.Register(reg, m.errors); err != nil {
		return nil, err
	}
	return m, nil
}
