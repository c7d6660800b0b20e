package observe

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// ResponseRecorder wraps an http.ResponseWriter and remembers the final
// status and the number of body bytes written. It always offers Flush,
// Hijack, Push and ReadFrom and forwards them to the wrapped writer, which
// answers http.ErrNotSupported when it cannot (e.g. Hijack on HTTP/2), and
// Unwrap lets http.ResponseController reach deadlines and full duplex.
type ResponseRecorder struct {
	w           http.ResponseWriter
	status      int
	bytes       atomic.Int64
	wroteHeader bool
	hijacked    bool
}

var (
	_ http.Flusher  = (*ResponseRecorder)(nil)
	_ http.Hijacker = (*ResponseRecorder)(nil)
	_ http.Pusher   = (*ResponseRecorder)(nil)
	_ io.ReaderFrom = (*ResponseRecorder)(nil)
)

// NewResponseRecorder wraps w.
func NewResponseRecorder(w http.ResponseWriter) *ResponseRecorder {
	return &ResponseRecorder{w: w}
}

// Reset makes r wrap w as if new, so recorders can be pooled.
func (r *ResponseRecorder) Reset(w http.ResponseWriter) {
	r.w, r.status, r.wroteHeader, r.hijacked = w, 0, false, false
	r.bytes.Store(0)
}

// Status returns the final status written: 200 when the handler wrote a body
// without WriteHeader, 101 after a hijack without one, 0 when nothing was
// written yet. Informational 1xx answers (100, 103) are not final.
func (r *ResponseRecorder) Status() int { return r.status }

// Written reports whether the final status line has been sent (or the
// connection hijacked): after that, the handler can no longer answer with an
// error status.
func (r *ResponseRecorder) Written() bool { return r.wroteHeader || r.hijacked }

// BytesWritten returns the body bytes written through the recorder.
func (r *ResponseRecorder) BytesWritten() int64 { return r.bytes.Load() }

// Hijacked reports whether the connection was taken over (WebSocket, CONNECT).
func (r *ResponseRecorder) Hijacked() bool { return r.hijacked }

// Header returns the wrapped writer's header map.
func (r *ResponseRecorder) Header() http.Header { return r.w.Header() }

// WriteHeader records the status and forwards it.
func (r *ResponseRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		// 1xx other than 101 are informational: the final status follows.
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			r.w.WriteHeader(code)
			return
		}
		r.status, r.wroteHeader = code, true
	}
	r.w.WriteHeader(code)
}

// Write counts and forwards body bytes.
func (r *ResponseRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	n, err := r.w.Write(b)
	r.bytes.Add(int64(n))
	return n, err
}

// ReadFrom copies from src, using the wrapped writer's ReadFrom (sendfile)
// when it has one, and counts the bytes.
func (r *ResponseRecorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	var n int64
	var err error
	if rf, ok := r.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		// Hide our ReadFrom so io.Copy does not recurse into it.
		n, err = io.Copy(writerOnly{r.w}, src)
	}
	r.bytes.Add(n)
	return n, err
}

type writerOnly struct{ io.Writer }

// Flush sends buffered data to the client; it does nothing when the wrapped
// writer cannot flush.
func (r *ResponseRecorder) Flush() { _ = r.FlushError() }

// FlushError flushes like Flush and reports failure; http.ResponseController
// prefers it.
func (r *ResponseRecorder) FlushError() error {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	return http.NewResponseController(r.w).Flush()
}

// Hijack takes over the connection when the wrapped writer allows it
// (HTTP/1.x); otherwise it returns http.ErrNotSupported.
func (r *ResponseRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.w).Hijack()
	if err == nil {
		r.hijacked = true
		if !r.wroteHeader {
			r.status = http.StatusSwitchingProtocols
		}
	}
	return c, rw, err
}

// Push initiates an HTTP/2 server push when the wrapped writer supports it.
func (r *ResponseRecorder) Push(target string, opts *http.PushOptions) error {
	if p, ok := r.w.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap returns the wrapped writer for http.ResponseController.
func (r *ResponseRecorder) Unwrap() http.ResponseWriter { return r.w }

// BodyCounter wraps a request body and counts the bytes read from it.
type BodyCounter struct {
	rc io.ReadCloser
	n  atomic.Int64
}

// CountBody replaces r.Body with a counting wrapper and returns it. A
// request without a body (nil or http.NoBody) keeps it, and the counter
// stays at zero.
func CountBody(r *http.Request) *BodyCounter {
	bc := &BodyCounter{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = bc
	}
	return bc
}

// Read reads from the body and counts the bytes.
func (b *BodyCounter) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Close closes the body.
func (b *BodyCounter) Close() error { return b.rc.Close() }

// N returns the number of bytes read so far (0 for a nil body).
func (b *BodyCounter) N() int64 {
	if b == nil {
		return 0
	}
	return b.n.Load()
}
