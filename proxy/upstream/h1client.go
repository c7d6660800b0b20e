package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Client sends HTTP/1.1 requests without a body, or with a small one of
// known length, over pooled connections on the caller's goroutine, and
// hands every other request to fallback (an http.Transport).
//
// Why it exists: http.Transport runs a read goroutine and a write goroutine
// per connection and passes every request and response between them and
// the caller through channels and selects. Most proxied requests are
// bodiless (GET, HEAD, DELETE, ...) or carry a small body (API calls); for
// them the caller can write the request, read the answer and stream the
// body itself, which takes the goroutine hand-offs, the per-request
// want/select machinery and the request's second serialization pass out of
// the proxy's hot path. Larger or chunked bodies, upgrades and Expect:
// 100-continue keep the standard transport, which handles an upstream that
// answers while the body is still being sent.
type h1Client struct {
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback http.RoundTripper
	maxIdle  int
	idleFor  time.Duration
	onStale  func() // counts pooled connections found closed; may be nil
	maxHead  int64  // bytes an answer's head (1xx included) may take

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by endpoint address; the newest last
	sweep  *time.Timer
	closed bool
}

func newH1Client(dial func(ctx context.Context, network, addr string) (net.Conn, error), fallback http.RoundTripper, maxIdle int) *h1Client {
	return &h1Client{dial: dial, fallback: fallback, maxIdle: maxIdle, idleFor: idleConnTimeout, maxHead: maxResponseHead, idle: make(map[string][]*h1Conn)}
}

// h1Conn is one pooled upstream connection.
type h1Conn struct {
	conn   net.Conn
	raw    syscall.RawConn // TCP socket (under TLS too) for the peek and the wait; nil when unavailable
	tls    bool
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time

	// Made once per connection so that a request allocates no closures.
	cutFn  func()
	sendFn func(uintptr) bool
	sent   bool  // sendFn state: the request went out
	werr   error // sendFn state: the write's error

	lim     headLimit   // under br: bounds the answer's head
	cw      countWriter // under bw: tells whether bw flushed on its own
	early   bool        // part of the request went out before send
	scratch [20]byte
}

// maxResponseHead bounds the head of an upstream's answer (status line,
// headers, and any 1xx answers before it) on the direct path; net/http's
// transport allows 10 MB, Envoy 60 KiB. More fails the request (502)
// instead of making the proxy buffer whatever the upstream sends.
const maxResponseHead = 1 << 20

// errHeadTooLarge is an answer whose head went past maxResponseHead.
var errHeadTooLarge = errors.New("upstream answer head too large")

// headLimit is the reader under an h1Conn's bufio.Reader: while left is
// not negative it lets only that many more bytes through.
type headLimit struct {
	r    io.Reader
	left int64
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// cut makes the connection's blocked reads and writes return.
func (pc *h1Conn) cut() { _ = pc.conn.SetDeadline(aLongTimeAgo) }

// writeThenWait is the raw read callback of send: write on its first call
// and ask to wait for readability, return on the next.
func (pc *h1Conn) writeThenWait(uintptr) bool {
	if pc.sent {
		return true
	}
	pc.sent = true
	pc.werr = pc.bw.Flush()
	return pc.werr != nil
}

// maxStaleTries bounds the sends of one request over pooled connections
// that turn out to be dead. After the first, the endpoint's idle
// connections are dropped, so the next try nearly always dials.
const maxStaleTries = 3

// staleError marks a failure before any byte of the answer came back,
// which on a reused connection means the upstream had closed it while it
// sat idle. unsent: the request could not even be written, so it never
// reached the upstream and may be sent again whatever its method.
type staleError struct {
	unsent bool
	err    error
}

func (e *staleError) Error() string {
	if e.unsent {
		return "write request: " + e.err.Error()
	}
	return "read response: connection closed before the answer: " + e.err.Error()
}

func (e *staleError) Unwrap() error { return e.err }

// maxDirectBody is the largest request body the direct path sends: it is
// read from the client before the request goes out, and so small a body
// fits the kernel's socket buffers, so writing it cannot block on an
// upstream that answers early without reading it.
const maxDirectBody = 16 << 10

// hasBody reports whether req carries a body to send.
func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

// direct reports whether req can take the direct path: no body, or a
// small one of known length.
func direct(req *http.Request) bool {
	if hasBody(req) && (req.ContentLength <= 0 || req.ContentLength > maxDirectBody) {
		return false
	}
	if req.Method == http.MethodConnect || req.Close || len(req.TransferEncoding) > 0 {
		return false
	}
	h := req.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	return req.URL.Opaque == "" && req.URL.User == nil
}

func (h *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if !direct(req) {
		if _, expect := req.Header["Expect"]; !expect && hasBody(req) && req.ContentLength < 0 {
			// A chunked body whose first chunk is malformed fails here,
			// before the transport sends the head upstream. Not with
			// Expect: 100-continue, whose body must wait for the upstream's
			// go-ahead (reading it would make net/http tell the client to
			// send it).
			probed, err := probeBody(req)
			if err != nil {
				return nil, err
			}
			req = probed
		}
		return h.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	// A request that may be sent twice is sent again on a new connection
	// when its pooled one turns out dead (below). A body can be sent again
	// only when it can be had again.
	body := hasBody(req)
	replay := !body || req.GetBody != nil
	once := !idempotent(req) || !replay
	for try := 1; ; try++ {
		pc, reused, err := h.get(ctx, addr)
		if err != nil {
			if body {
				_ = req.Body.Close()
			}
			return nil, err
		}
		resp, err := pc.roundTrip(ctx, req, h)
		if err == nil {
			return resp, nil
		}
		var stale *staleError
		if reused && try < maxStaleTries && errors.As(err, &stale) && (stale.unsent && replay || !once) && ctx.Err() == nil {
			// The upstream closed idle connections (it restarted, or its
			// keep-alive timeout is shorter than ours); its other idle
			// connections are likely gone too.
			if h.onStale != nil {
				h.onStale()
			}
			h.dropIdle(addr)
			if body {
				again, err := req.GetBody()
				if err != nil {
					return nil, fmt.Errorf("replay request body: %w", err)
				}
				r2 := *req
				r2.Body = again
				req = &r2
			}
			continue
		}
		return nil, err
	}
}

// get returns an idle connection to addr, checked with a peek, or dials a
// new one. The peek costs a system call per reuse; it is what stands in
// for http.Transport's reader goroutine, which sees an idle connection
// close or receive bytes nobody asked for (a HEAD answered with a body, an
// upstream that answered twice) and drops it, so that such bytes are never
// read as the next request's answer.
func (h *h1Client) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	now := time.Now()
	h.mu.Lock()
	for {
		list := h.idle[addr]
		if len(list) == 0 {
			break
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		h.idle[addr] = list[:len(list)-1]
		if now.Sub(pc.idleAt) < h.idleFor {
			h.mu.Unlock()
			if pc.alive() {
				return pc, true, nil
			}
			if h.onStale != nil {
				h.onStale()
			}
			_ = pc.conn.Close()
			h.mu.Lock()
			continue
		}
		_ = pc.conn.Close()
	}
	h.mu.Unlock()
	conn, err := h.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return newH1Conn(conn, addr), false, nil
}

func newH1Conn(conn net.Conn, addr string) *h1Conn {
	pc := &h1Conn{conn: conn, addr: addr}
	pc.lim = headLimit{r: conn, left: -1}
	pc.br = bufio.NewReaderSize(&pc.lim, 4<<10)
	pc.cw.w = conn
	pc.bw = bufio.NewWriterSize(&pc.cw, 4<<10)
	pc.cutFn, pc.sendFn = pc.cut, pc.writeThenWait
	inner := conn
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		inner = tc.NetConn()
		pc.tls = true
	}
	if sc, ok := inner.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			pc.raw = raw
		}
	}
	return pc
}

// put returns pc to the idle pool, or closes it when the pool is full or
// the client closed.
func (h *h1Client) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	h.mu.Lock()
	if h.closed || len(h.idle[pc.addr]) >= h.maxIdle {
		h.mu.Unlock()
		_ = pc.conn.Close()
		return
	}
	h.idle[pc.addr] = append(h.idle[pc.addr], pc)
	if h.sweep == nil {
		h.sweep = time.AfterFunc(h.idleFor, h.sweepIdle)
	}
	h.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idleFor; it runs every
// idleFor while the pool holds any.
func (h *h1Client) sweepIdle() {
	now := time.Now()
	var dead []*h1Conn
	h.mu.Lock()
	h.sweep = nil
	left := 0
	for addr, list := range h.idle {
		keep := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleAt) >= h.idleFor {
				dead = append(dead, pc)
			} else {
				keep = append(keep, pc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(h.idle, addr)
		} else {
			h.idle[addr] = keep
			left += len(keep)
		}
	}
	if left > 0 && !h.closed {
		h.sweep = time.AfterFunc(h.idleFor, h.sweepIdle)
	}
	h.mu.Unlock()
	for _, pc := range dead {
		_ = pc.conn.Close()
	}
}

// dropIdle closes every idle connection to addr.
func (h *h1Client) dropIdle(addr string) {
	h.mu.Lock()
	list := h.idle[addr]
	delete(h.idle, addr)
	h.mu.Unlock()
	for _, pc := range list {
		_ = pc.conn.Close()
	}
}

// CloseIdleConnections closes the idle connections of both paths.
func (h *h1Client) CloseIdleConnections() {
	h.mu.Lock()
	idle := h.idle
	h.idle = make(map[string][]*h1Conn)
	h.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			_ = pc.conn.Close()
		}
	}
	if ci, ok := h.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// close closes the pool for good: connections in use are closed when their
// response ends instead of going back.
func (h *h1Client) close() {
	h.mu.Lock()
	h.closed = true
	if h.sweep != nil {
		h.sweep.Stop()
		h.sweep = nil
	}
	h.mu.Unlock()
	h.CloseIdleConnections()
}

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req on pc and reads the answer's head. On success the
// response body owns pc; on failure pc is closed.
func (pc *h1Conn) roundTrip(ctx context.Context, req *http.Request, h *h1Client) (*http.Response, error) {
	err := pc.writeRequest(req)
	if hasBody(req) {
		_ = req.Body.Close() // read to its end, or failed: either way done
	}
	if err != nil {
		_ = pc.conn.Close()
		return nil, err
	}
	// The request context (client gone, per-try or overall timeout) cuts
	// blocked writes and reads through the connection's deadline.
	stop := context.AfterFunc(ctx, pc.cutFn)
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = pc.conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream exchange: %w", context.Cause(ctx))
		}
		return nil, err
	}
	sent, err := pc.send()
	if !sent {
		return fail(&staleError{unsent: true, err: err})
	}
	if err != nil {
		return fail(fmt.Errorf("wait for the answer: %w", err))
	}
	pc.lim.left = h.maxHead
	resp, err := pc.readResponse(ctx, req)
	pc.lim.left = -1
	if err != nil {
		return fail(err)
	}
	if resp.Body == http.NoBody {
		pc.release(h, resp.Close || req.Close, stop)
		return resp, nil
	}
	resp.Body = &h1Body{pc: pc, h: h, ctx: ctx, body: resp.Body, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// release ends pc's use by one exchange: back to the pool when it is clean,
// closed otherwise.
func (pc *h1Conn) release(h *h1Client, closeIt bool, stop func() bool) {
	if !stop() {
		closeIt = true // the deadline was (or is being) moved: unusable
	}
	if closeIt || pc.br.Buffered() > 0 {
		// Bytes after the end of the answer would be read as the next
		// request's answer: never reuse such a connection.
		_ = pc.conn.Close()
		return
	}
	h.put(pc)
}

var errInvalidRequest = errors.New("invalid request")

// reqExcluded are the headers writeRequest writes itself or never sends.
var reqExcluded = map[string]bool{"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Connection": true}

// send flushes the request and waits until the answer is readable without
// first trying a read that would only say "not yet" (one system call less
// per request). The wait is armed before the request goes out, so an
// answer cannot slip in unnoticed. Over TLS it waits on the socket
// beneath: the answer's records are new bytes there whatever tls.Conn
// holds already (a session ticket read early only wakes it sooner). sent is
// false when the request could not be written; err is then the write
// error, else the wait's.
func (pc *h1Conn) send() (sent bool, err error) {
	if pc.raw == nil || pc.early || pc.br.Buffered() > 0 {
		// An early part may have been answered already (a 431, a 413):
		// waiting for a readiness that was already reported would hang.
		err = pc.bw.Flush()
		return err == nil, err
	}
	pc.sent, pc.werr = false, nil
	err = pc.raw.Read(pc.sendFn)
	if pc.werr != nil {
		return false, pc.werr
	}
	if !pc.sent {
		return false, err // never got to write
	}
	return true, err
}

// writeRequest buffers req's head and body for send. A request larger
// than the buffer has partly gone out already when it returns (early).
func (pc *h1Conn) writeRequest(req *http.Request) error {
	start := pc.cw.n
	err := pc.writeHead(req)
	pc.early = pc.cw.n != start
	return err
}

// writeHead writes req's head, and its body when it has one.
func (pc *h1Conn) writeHead(req *http.Request) error {
	bw := pc.bw
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("%w: host %q", errInvalidRequest, host)
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	for i := 0; i < len(method); i++ {
		if !httpguts.IsTokenRune(rune(method[i])) {
			return fmt.Errorf("%w: method %q", errInvalidRequest, method)
		}
	}
	uri := req.URL.RequestURI()
	if uri[0] != '/' && (uri != "*" || method != http.MethodOptions) {
		// An origin-form target starts with "/"; anything else (a filter's
		// rewrite gone wrong) would be read as another form or refused.
		return fmt.Errorf("%w: request target %q", errInvalidRequest, uri)
	}
	for i := 0; i < len(uri); i++ {
		if b := uri[i]; b <= ' ' || b == 0x7f {
			return fmt.Errorf("%w: request target %q", errInvalidRequest, uri)
		}
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		if !httpguts.ValidHeaderFieldValue(ua[0]) {
			bw.Reset(&pc.cw)
			return fmt.Errorf("%w: header User-Agent", errInvalidRequest)
		}
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua[0])
		bw.WriteString("\r\n")
	}
	for k, vs := range req.Header {
		if reqExcluded[k] {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			bw.Reset(&pc.cw)
			return fmt.Errorf("%w: header name %q", errInvalidRequest, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				bw.Reset(&pc.cw)
				return fmt.Errorf("%w: value of header %s", errInvalidRequest, k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	if hasBody(req) {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(pc.scratch[:0], req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		return pc.writeBody(req)
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		// A bodiless request of a method that normally has one says so,
		// as net/http does, so the upstream does not wait for a body.
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	return nil
}

// errBodyLength is a request body that is not as long as its
// Content-Length says.
var errBodyLength = errors.New("request body length differs from Content-Length")

// writeBody copies req's body (of known, small length) after the head. A
// body that ends early or runs long fails the request: the
// upstream must never see a message whose framing lies.
func (pc *h1Conn) writeBody(req *http.Request) error {
	n, err := pc.bw.ReadFrom(io.LimitReader(req.Body, req.ContentLength))
	if err != nil {
		return &bodyError{err: err}
	}
	if n != req.ContentLength {
		return &bodyError{err: fmt.Errorf("%w: %d of %d bytes", errBodyLength, n, req.ContentLength)}
	}
	if m, _ := req.Body.Read(pc.scratch[:1]); m > 0 {
		return &bodyError{err: fmt.Errorf("%w: more than %d bytes", errBodyLength, req.ContentLength)}
	}
	return nil
}

// bodyError is a failure to read the request's body (the client's side).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// ClientFault: the upstream is not to blame (see isClientFault).
func (e *bodyError) ClientFault() bool { return true }

// maxInformational bounds the 1xx answers accepted before the final one.
const maxInformational = 8

// readResponse reads the final answer's head, passing 1xx answers to the
// request's client trace (httputil.ReverseProxy forwards them).
func (pc *h1Conn) readResponse(ctx context.Context, req *http.Request) (*http.Response, error) {
	if _, err := pc.br.Peek(1); err != nil {
		// Nothing came back at all: the connection was dead before the
		// request reached the upstream's application.
		return nil, &staleError{err: err}
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		code := resp.StatusCode
		if code >= 200 {
			return resp, nil
		}
		if code == http.StatusSwitchingProtocols || n >= maxInformational {
			return nil, fmt.Errorf("read response: unexpected %d answer", code)
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// h1Body is the body of an answer read on the direct path. It gives the
// connection back to the pool once read to its end and closed.
type h1Body struct {
	pc   *h1Conn
	h    *h1Client
	ctx  context.Context
	body io.ReadCloser
	stop func() bool
	keep bool // the answer allows reusing the connection
	// eof and done are atomic because Close may run while a Read is blocked.
	eof  atomic.Bool
	done atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil && b.ctx.Err() != nil:
		err = fmt.Errorf("read response body: %w", context.Cause(b.ctx))
	}
	return n, err
}

// Close ends the exchange. An answer not read to its end closes the
// connection rather than reading the rest (which could be endless).
func (b *h1Body) Close() error {
	if !b.done.CompareAndSwap(false, true) {
		return nil
	}
	if !b.eof.Load() {
		b.stop()
		return b.pc.conn.Close()
	}
	_ = b.body.Close() // at EOF: releases the body without reading
	b.pc.release(b.h, !b.keep, b.stop)
	return nil
}

// probeWait is how long probeBody waits for a body's first bytes before
// letting the request go ahead (net/http's own probe waits as long).
const probeWait = 200 * time.Millisecond

// probeBody reads the first piece of req's body (of unknown length) before
// anything goes upstream: http.Transport sends the head before it reads a
// body, so a malformed first chunk would otherwise reach the upstream as a
// request cut short. A read error within probeWait fails the request as
// the client's (400, nothing sent); data, or a client still silent after
// probeWait (a stream that waits for the answer), goes on to the transport
// behind what was read. The returned request is a copy when the body was
// touched.
func probeBody(req *http.Request) (*http.Request, error) {
	p := &probedBody{body: req.Body, buf: make([]byte, 4<<10), done: make(chan struct{})}
	go p.first()
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-p.done:
		if p.err != nil && p.err != io.EOF {
			_ = req.Body.Close()
			return nil, &bodyError{err: p.err}
		}
	case <-t.C:
	case <-req.Context().Done():
	}
	r2 := *req
	r2.Body = p
	return &r2, nil
}

// probedBody is a request body whose first Read ran ahead in a goroutine:
// it gives that read's result first, then reads on from the body.
type probedBody struct {
	body io.ReadCloser
	buf  []byte
	n    int // bytes of buf not given out yet start at off
	off  int
	err  error
	done chan struct{} // closed when the first read returned
}

func (p *probedBody) first() {
	p.n, p.err = p.body.Read(p.buf)
	close(p.done)
}

func (p *probedBody) Read(b []byte) (int, error) {
	<-p.done
	if p.off < p.n {
		k := copy(b, p.buf[p.off:p.n])
		p.off += k
		return k, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	return p.body.Read(b)
}

// Close closes the body; while the first read still waits on the client,
// it does so without waiting for it (net/http's body Close would).
func (p *probedBody) Close() error {
	select {
	case <-p.done:
		return p.body.Close()
	default:
		go func() {
			<-p.done
			_ = p.body.Close()
		}()
		return nil
	}
}
