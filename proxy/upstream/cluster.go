package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Cluster is one upstream service: its endpoints, balancer, transport and
// resilience policies. It is an http.RoundTripper, meant to be the Transport
// of an httputil.ReverseProxy. It is safe for concurrent use.
type Cluster struct {
	name     string
	cfg      config.Cluster
	balancer string
	hash     *config.HashPolicy
	scheme   string
	rt       http.RoundTripper
	closeRT  func()
	retry    *config.Retry
	budget   config.RetryBudget
	outlier  *config.Outlier
	breaker  *breaker
	log      *zap.Logger
	m        *clusterMetrics

	serverName string // configured TLS server name, "" to use each endpoint's

	rr       atomic.Uint64
	active   atomic.Int64 // calls in flight, bodies included
	retrying atomic.Int64 // calls in flight that made at least one retry
	tab      atomic.Pointer[table]

	mirrorSlots chan struct{}

	mu      sync.Mutex
	closed  bool
	sources []source
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

var _ http.RoundTripper = (*Cluster)(nil)

// CallOptions are per-request overrides of a cluster's policies, usually the
// matched route's retry policy and timeout.
type CallOptions struct {
	// Retry replaces the cluster's retry policy when not nil.
	Retry *config.Retry
	// Timeout bounds the whole call until the upstream's response headers
	// arrive, across all tries and backoffs; 0 means no bound. The response
	// body then streams under the request context only.
	Timeout time.Duration
	// Trace, when not nil, is filled in by RoundTrip for the access log.
	Trace *CallTrace
}

// CallTrace records how a call went: the endpoint of its last try and the
// number of tries. It is written before RoundTrip returns.
type CallTrace struct {
	// Endpoint is the "ip:port" of the last try, empty if none was made.
	Endpoint string
	// Tries is the number of tries made (retries are Tries-1).
	Tries int
}

type callOptsKey struct{}

// WithCallOptions returns a context that makes (*Cluster).RoundTrip use o.
func WithCallOptions(ctx context.Context, o CallOptions) context.Context {
	return context.WithValue(ctx, callOptsKey{}, &o)
}

func callOptionsFrom(ctx context.Context) *CallOptions {
	o, _ := ctx.Value(callOptsKey{}).(*CallOptions)
	return o
}

// Retry defaults applied when a policy leaves a field unset.
const (
	defaultAttempts = 2
	defaultBackoff  = 25 * time.Millisecond
)

var defaultRetryOn = []string{"connect-failure", "reset", "gateway-error"}

var (
	// errClientBody types a try that failed on the client's request body.
	errClientBody  = errors.New("upstream: request body failed on the client's side")
	errTryTimeout  = fmt.Errorf("per-try timeout: %w", ErrTimeout)
	errCallTimeout = fmt.Errorf("overall timeout: %w", ErrTimeout)
)

// failure kinds of one try
type kind int

const (
	kindNone kind = iota
	kindConnect
	kindReset
	kindTryTimeout
	kindCallTimeout
	kindCanceled
	kindClient // the client's fault (its body failed): not the endpoint's
)

// RoundTrip sends req to one endpoint of the cluster, retrying and failing
// over as the retry policy allows. The URL's scheme and host are replaced by
// the chosen endpoint's; everything else, Host header included, is sent as
// is. Errors are typed (see StatusFor). The response body must be closed.
func (c *Cluster) RoundTrip(req *http.Request) (*http.Response, error) {
	return c.Send(req, callOptionsFrom(req.Context()))
}

// Send is RoundTrip with the call options given directly (nil for the
// cluster's defaults), which spares the proxy a context value per request.
func (c *Cluster) Send(req *http.Request, o *CallOptions) (*http.Response, error) {
	ctx := req.Context()
	var pol *config.Retry
	var timeout time.Duration
	var trace *CallTrace
	if o != nil {
		pol, timeout, trace = o.Retry, o.Timeout, o.Trace
	}
	if pol == nil {
		pol = c.retry
	}
	if err := c.breaker.acquire(ctx); err != nil {
		closeReqBody(req)
		if errors.Is(err, ErrOverloaded) {
			c.m.overloaded.Inc()
		}
		return nil, fmt.Errorf("upstream: cluster %q: %w", c.name, err)
	}
	c.active.Add(1)
	cl := &call{c: c, req: req, ctx: ctx, trace: trace}
	if timeout > 0 {
		var cancel context.CancelCauseFunc
		cl.ctx, cancel = context.WithCancelCause(ctx)
		cl.cancel = cancel
		cl.timer = time.AfterFunc(timeout, func() { cancel(errCallTimeout) })
	}
	resp, err := cl.run(pol)
	if err != nil {
		cl.finish()
		return nil, err
	}
	cl.body = resp.Body
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &rwCall{call: cl, w: rw}
	} else {
		resp.Body = cl
	}
	return resp, nil
}

// call is the state of one RoundTrip; once RoundTrip returns a response it
// is also the response body, and closing it releases what the call holds.
type call struct {
	c      *Cluster
	req    *http.Request
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer

	trace     *CallTrace
	e         *endpoint // endpoint of the current try
	tryCancel context.CancelCauseFunc
	retried   bool // counted in c.retrying

	body io.ReadCloser
	done atomic.Bool

	out http.Request // the first try's outbound request
	url url.URL
}

// Read reads the upstream response body.
func (cl *call) Read(p []byte) (int, error) { return cl.body.Read(p) }

// Close closes the upstream response body and ends the call.
func (cl *call) Close() error {
	err := cl.body.Close()
	if cl.done.CompareAndSwap(false, true) {
		cl.finish()
	}
	return err
}

// rwCall is the body of a 101 Switching Protocols response, which
// httputil.ReverseProxy writes to as well.
type rwCall struct {
	*call
	w io.Writer
}

// Write writes to the upgraded connection.
func (r *rwCall) Write(p []byte) (int, error) { return r.w.Write(p) }

func (cl *call) endTry() {
	if cl.e != nil {
		cl.e.active.Add(-1)
		cl.e = nil
	}
	if cl.tryCancel != nil {
		cl.tryCancel(nil)
		cl.tryCancel = nil
	}
}

func (cl *call) finish() {
	cl.endTry()
	if cl.cancel != nil {
		cl.timer.Stop()
		cl.cancel(nil)
	}
	if cl.retried {
		cl.c.retrying.Add(-1)
	}
	cl.c.active.Add(-1)
	cl.c.breaker.release()
}

// run makes tries until one gives a response to return or the policy says stop.
func (cl *call) run(pol *config.Retry) (*http.Response, error) {
	c := cl.c
	attempts := 1
	var perTry time.Duration
	if pol != nil {
		attempts = pol.Attempts
		if attempts <= 0 {
			attempts = defaultAttempts
		}
		perTry = pol.PerTryTimeout
	}
	var avoid *endpoint
	for try := 1; ; try++ {
		e := c.pick(c.tab.Load(), cl.req, avoid)
		if e == nil {
			closeReqBody(cl.req)
			c.m.noHealthy.Inc()
			return nil, fmt.Errorf("upstream: cluster %q: %w", c.name, ErrNoHealthyEndpoint)
		}
		resp, k, err := cl.try(e, try, perTry)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		c.record(e, outcomeOf(k, status))
		if k == kindNone && status < 500 {
			return cl.deliver(resp)
		}
		if !cl.retryable(pol, try, attempts, k, status) {
			if err != nil {
				return nil, err
			}
			return cl.deliver(resp)
		}
		if resp != nil {
			drain(resp.Body)
		}
		cl.endTry()
		avoid = e
		c.m.retries.Inc()
		if ce := c.log.Check(zap.DebugLevel, "retrying"); ce != nil {
			ce.Write(zap.String("endpoint", e.addr), zap.Int("try", try), zap.Int("status", status), zap.Error(err))
		}
		if err := cl.backoff(pol, try); err != nil {
			return nil, err
		}
	}
}

// deliver returns the response that ends the call, unless the overall
// timeout fired as it arrived.
func (cl *call) deliver(resp *http.Response) (*http.Response, error) {
	if cl.timer != nil && !cl.timer.Stop() {
		_ = resp.Body.Close()
		cl.c.m.timeouts.Inc()
		return nil, fmt.Errorf("upstream: cluster %q: %w", cl.c.name, errCallTimeout)
	}
	return resp, nil
}

// try sends one try to e. It returns the response (for any status) or the
// failure kind and a typed error.
func (cl *call) try(e *endpoint, n int, perTry time.Duration) (*http.Response, kind, error) {
	c := cl.c
	ctx := cl.ctx
	var timer *time.Timer
	if perTry > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		cl.tryCancel = cancel
		timer = time.AfterFunc(perTry, func() { cancel(errTryTimeout) })
	}
	var out *http.Request
	var u *url.URL
	if n == 1 && ctx == cl.req.Context() {
		// First try: copy into the call itself to save two allocations.
		cl.out, cl.url = *cl.req, *cl.req.URL
		out, u = &cl.out, &cl.url
	} else {
		out = cl.req.WithContext(ctx)
		uc := *cl.req.URL
		u = &uc
	}
	u.Scheme, u.Host = c.scheme, e.addr
	out.URL = u
	if n > 1 && cl.req.GetBody != nil {
		body, err := cl.req.GetBody()
		if err != nil {
			return nil, kindCanceled, fmt.Errorf("upstream: cluster %q: replay body: %w", c.name, err)
		}
		out.Body = body
	}
	cl.e = e
	e.active.Add(1)
	if cl.trace != nil {
		cl.trace.Endpoint, cl.trace.Tries = e.addr, n
	}
	resp, err := c.rt.RoundTrip(out)
	if timer != nil && !timer.Stop() && err == nil {
		// The per-try timer fired as the headers arrived: the body would fail.
		resp.Body.Close()
		resp, err = nil, context.Cause(ctx)
	}
	if err == nil {
		c.m.status(resp.StatusCode)
		return resp, kindNone, nil
	}
	c.m.class[0].Inc()
	k, typed := cl.classify(ctx, err)
	switch k {
	case kindConnect:
		c.m.connect.Inc()
	case kindReset:
		c.m.reset.Inc()
	case kindTryTimeout, kindCallTimeout:
		c.m.timeout.Inc()
		c.m.timeouts.Inc()
	}
	return nil, k, fmt.Errorf("upstream: cluster %q endpoint %s: %w: %w", c.name, e.addr, typed, err)
}

func (cl *call) classify(tryCtx context.Context, err error) (kind, error) {
	switch {
	case errors.Is(context.Cause(cl.ctx), errCallTimeout):
		return kindCallTimeout, ErrTimeout
	case errors.Is(context.Cause(tryCtx), errTryTimeout):
		return kindTryTimeout, ErrTimeout
	case cl.req.Context().Err() != nil:
		return kindCanceled, context.Cause(cl.req.Context())
	case isClientFault(err):
		return kindClient, errClientBody
	case isDialError(err):
		return kindConnect, ErrConnect
	default:
		return kindReset, ErrReset
	}
}

func outcomeOf(k kind, status int) outcome {
	switch k {
	case kindNone:
		if status >= 500 {
			return outcome5xx
		}
		return outcomeOK
	case kindConnect:
		return outcomeConnect
	case kindReset, kindTryTimeout:
		return outcome5xx
	}
	return outcomeIgnore
}

// retryable decides whether a failed try is retried, and takes a retry
// budget slot for the call when it is.
func (cl *call) retryable(pol *config.Retry, try, attempts int, k kind, status int) bool {
	if pol == nil || try >= attempts || k == kindCallTimeout || k == kindCanceled || k == kindClient {
		return false
	}
	if !retryOn(pol, k, status) {
		return false
	}
	req := cl.req
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false // the body is consumed and cannot be sent again
	}
	if k != kindConnect && !idempotent(req) && !pol.NonIdempotent {
		return false
	}
	if !cl.retried {
		if !cl.c.admitRetry() {
			cl.c.m.budget.Inc()
			return false
		}
		cl.retried = true
	}
	return true
}

// admitRetry takes a retry slot if the retry budget allows one more call in
// retry: max(min_retry_concurrency, percent × active calls).
func (c *Cluster) admitRetry() bool {
	limit := max(int64(c.budget.MinRetryConcurrency), int64(c.budget.Percent*float64(c.active.Load())/100))
	if c.retrying.Add(1) > limit {
		c.retrying.Add(-1)
		return false
	}
	return true
}

// retryOn reports whether the policy's triggers match the try's result.
func retryOn(pol *config.Retry, k kind, status int) bool {
	on := pol.On
	if len(on) == 0 {
		on = defaultRetryOn
	}
	timeout := k == kindTryTimeout
	for _, s := range on {
		switch s {
		case "connect-failure":
			if k == kindConnect {
				return true
			}
		case "reset":
			if k == kindReset {
				return true
			}
		case "5xx":
			if status >= 500 || k == kindConnect || k == kindReset || timeout {
				return true
			}
		case "gateway-error":
			if status == 502 || status == 503 || status == 504 || timeout {
				return true
			}
		default:
			if code, err := strconv.Atoi(s); err == nil && (code == status || (code == 504 && timeout)) {
				return true
			}
		}
	}
	return false
}

// idempotent reports whether req may be sent twice: safe methods, PUT,
// DELETE, or a request carrying an Idempotency-Key header.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

// backoff sleeps before retry number try: base × 2^(try-1), capped at 10 ×
// base, jittered to between half and all of that.
func (cl *call) backoff(pol *config.Retry, try int) error {
	base := pol.Backoff
	if base <= 0 {
		base = defaultBackoff
	}
	d := min(base<<min(try-1, 10), 10*base)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-cl.ctx.Done():
		cause := context.Cause(cl.ctx)
		if errors.Is(cause, errCallTimeout) {
			cl.c.m.timeouts.Inc()
			return fmt.Errorf("upstream: cluster %q: %w", cl.c.name, cause)
		}
		return fmt.Errorf("upstream: cluster %q: %w", cl.c.name, cause)
	}
}

func closeReqBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// drain reads a little of a discarded body so its connection can be reused.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	_ = body.Close()
}
