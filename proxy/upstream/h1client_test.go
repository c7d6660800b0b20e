package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted is a raw HTTP/1.1 upstream on loopback: answer decides, per
// request, the bytes written back and whether the connection stays open.
// It counts connections and records every request head it read.
type scripted struct {
	ln     net.Listener
	conns  atomic.Int64
	mu     sync.Mutex
	heads  []*http.Request
	closed chan struct{} // one value each time answer closes a connection
	wg     sync.WaitGroup
}

type answerFunc func(n int, req *http.Request) (raw string, keepOpen bool)

func newScripted(t *testing.T, answer answerFunc) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln, closed: make(chan struct{}, 64)}
	var open sync.Map
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			open.Store(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer open.Delete(c)
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					s.mu.Lock()
					s.heads = append(s.heads, req)
					s.mu.Unlock()
					raw, keep := answer(n, req)
					if raw == "" && keep {
						// hang: answer nothing until the test ends
						_, _ = br.ReadByte()
						return
					}
					if _, err := io.WriteString(c, raw); err != nil || !keep {
						c.Close()
						s.closed <- struct{}{}
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		s.wg.Wait()
	})
	return s
}

func (s *scripted) addr() string { return s.ln.Addr().String() }

func (s *scripted) head(i int) *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads[i]
}

// failRT is a fallback that must not be used.
type failRT struct{ used atomic.Int64 }

func (f *failRT) RoundTrip(*http.Request) (*http.Response, error) {
	f.used.Add(1)
	return nil, errors.New("fallback used")
}

func newTestH1(t *testing.T, fallback http.RoundTripper) *h1Client {
	t.Helper()
	d := net.Dialer{Timeout: time.Second}
	h := newH1Client(d.DialContext, fallback, 4)
	t.Cleanup(h.close)
	return h
}

func h1Req(t *testing.T, ctx context.Context, method, addr, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "svc.example"
	return req
}

// readAll sends req through h and reads the whole answer.
func readAll(h http.RoundTripper, req *http.Request) (*http.Response, string, error) {
	resp, err := h.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func TestH1ClientFramings(t *testing.T) {
	const ok2 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name      string
		method    string
		raw       string
		wantBody  string
		wantConns int64 // after three requests
		trailer   string
	}{
		{"content-length", "GET", ok2, "ok", 1, ""},
		{"chunked with trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n", "abcde", 1, "5"},
		{"no content", "DELETE", "HTTP/1.1 204 No Content\r\n\r\n", "", 1, ""},
		{"not modified", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "", 1, ""},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "", 1, ""},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", 3, ""},
		{"http/1.0 until close", "GET", "HTTP/1.0 200 OK\r\n\r\nuntil-eof", "until-eof", 3, ""},
		{"bytes after the answer", "GET", ok2 + "HTTP/1.1 200 OK\r\n", "ok", 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep := !strings.Contains(tt.raw, "close") && !strings.HasPrefix(tt.raw, "HTTP/1.0")
			up := newScripted(t, func(int, *http.Request) (string, bool) { return tt.raw, keep })
			fb := &failRT{}
			h := newTestH1(t, fb)
			for i := range 3 {
				resp, body, err := readAll(h, h1Req(t, context.Background(), tt.method, up.addr(), "/p?q=1"))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if body != tt.wantBody {
					t.Fatalf("request %d: body %q, want %q", i, body, tt.wantBody)
				}
				if tt.trailer != "" && resp.Trailer.Get("X-Sum") != tt.trailer {
					t.Fatalf("trailer %q, want %q", resp.Trailer.Get("X-Sum"), tt.trailer)
				}
			}
			if got := up.conns.Load(); got != tt.wantConns {
				t.Errorf("upstream saw %d connections for 3 requests, want %d", got, tt.wantConns)
			}
			if fb.used.Load() != 0 {
				t.Error("bodiless request went to the fallback transport")
			}
		})
	}
}

func TestH1ClientWritesTheRequest(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true
	})
	h := newTestH1(t, &failRT{})
	req := h1Req(t, context.Background(), "POST", up.addr(), "/a%20b?x=1&y=2")
	req.Header.Set("User-Agent", "")
	req.Header["X-Multi"] = []string{"one", " two "}
	req.Header.Set("Connection", "keep-alive") // hop-by-hop: never sent
	req.Header.Set("Content-Length", "12")     // the request has no body
	if _, _, err := readAll(h, req); err != nil {
		t.Fatal(err)
	}
	got := up.head(0)
	if got.Method != "POST" || got.RequestURI != "/a%20b?x=1&y=2" || got.Host != "svc.example" {
		t.Errorf("request line/host: %s %s host %s", got.Method, got.RequestURI, got.Host)
	}
	if _, ok := got.Header["User-Agent"]; ok {
		t.Errorf("an empty User-Agent was sent: %q", got.Header["User-Agent"])
	}
	if v := got.Header.Values("X-Multi"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Errorf("X-Multi = %q", v)
	}
	if got.ContentLength != 0 || got.Header.Get("Content-Length") != "0" {
		t.Errorf("bodiless POST: Content-Length %q", got.Header.Get("Content-Length"))
	}
	if got.Header.Get("Connection") != "" {
		t.Errorf("Connection header forwarded: %q", got.Header.Get("Connection"))
	}
}

func TestH1ClientRefusesInjection(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true
	})
	tests := []struct {
		name string
		mod  func(*http.Request)
	}{
		{"header value", func(r *http.Request) { r.Header["X-A"] = []string{"v\r\nX-Injected: 1"} }},
		{"header name", func(r *http.Request) { r.Header["X A"] = []string{"v"} }},
		{"host", func(r *http.Request) { r.Host = "a\r\nX-Injected: 1" }},
		{"method", func(r *http.Request) { r.Method = "GET /x HTTP/1.1\r\n" }},
		{"user agent", func(r *http.Request) { r.Header["User-Agent"] = []string{"a\nb"} }},
	}
	h := newTestH1(t, &failRT{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := h1Req(t, context.Background(), "GET", up.addr(), "/")
			tt.mod(req)
			if _, err := h.RoundTrip(req); !errors.Is(err, errInvalidRequest) {
				t.Fatalf("err = %v, want errInvalidRequest", err)
			}
		})
	}
	// A clean request still works and is the first the upstream ever saw.
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/clean")); err != nil {
		t.Fatal(err)
	}
	if got := up.head(0).URL.Path; got != "/clean" {
		t.Errorf("first request the upstream read: %s", got)
	}
}

func TestH1ClientStaleIdleConnections(t *testing.T) {
	// The upstream closes every connection right after its answer, without
	// saying so (as a keep-alive timeout or a restart does).
	up := newScripted(t, func(n int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := newTestH1(t, &failRT{})
	for i, method := range []string{"GET", "POST", "DELETE", "POST"} {
		if _, body, err := readAll(h, h1Req(t, context.Background(), method, up.addr(), "/")); err != nil || body != "ok" {
			t.Fatalf("request %d (%s): %q, %v", i, method, body, err)
		}
		// Wait until the upstream closed, so the pooled connection is dead.
		select {
		case <-up.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("upstream did not close")
		}
	}
	if got := up.conns.Load(); got != 4 {
		t.Errorf("connections = %d, want 4 (one per request)", got)
	}
}

func TestH1ClientRetriesIdempotentOnDeadReuse(t *testing.T) {
	// The connection dies after the liveness check passed: the pooled
	// connection's peer is closed only once the request is written.
	up := newScripted(t, func(n int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	h := newTestH1(t, &failRT{})
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/")); err != nil {
		t.Fatal(err)
	}
	// Replace the pooled connection's reader with one that fails as a
	// closed connection does, without touching the socket: the request is
	// written, no answer comes back.
	h.mu.Lock()
	pc := h.idle[up.addr()][0]
	h.mu.Unlock()
	pc.br.Reset(eofReader{})
	if _, body, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/")); err != nil || body != "ok" {
		t.Fatalf("GET after a dead reuse: %q, %v", body, err)
	}
	if got := up.conns.Load(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
	// A POST in the same spot is not sent twice.
	h.mu.Lock()
	pc = h.idle[up.addr()][0]
	h.mu.Unlock()
	pc.br.Reset(eofReader{})
	var stale *staleError
	if _, err := h.RoundTrip(h1Req(t, context.Background(), "POST", up.addr(), "/")); !errors.As(err, &stale) {
		t.Fatalf("POST after a dead reuse: err = %v, want a staleError", err)
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func TestH1ClientCancel(t *testing.T) {
	t.Run("waiting for the head", func(t *testing.T) {
		up := newScripted(t, func(int, *http.Request) (string, bool) { return "", true })
		h := newTestH1(t, &failRT{})
		ctx, cancel := context.WithCancelCause(context.Background())
		cause := errors.New("client went away")
		time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
		_, err := h.RoundTrip(h1Req(t, ctx, "GET", up.addr(), "/"))
		if !errors.Is(err, cause) {
			t.Fatalf("err = %v, want the context's cause", err)
		}
	})
	t.Run("reading the body", func(t *testing.T) {
		up := newScripted(t, func(int, *http.Request) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", true
		})
		h := newTestH1(t, &failRT{})
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := h.RoundTrip(h1Req(t, ctx, "GET", up.addr(), "/"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 7)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
	})
}

func TestH1ClientEarlyCloseDoesNotDrain(t *testing.T) {
	// An endless chunked body: Close must not try to read it to its end.
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true
	})
	h := newTestH1(t, &failRT{})
	resp, err := h.RoundTrip(h1Req(t, context.Background(), "GET", up.addr(), "/"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { resp.Body.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked reading the rest of the body")
	}
	h.mu.Lock()
	n := len(h.idle[up.addr()])
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("a connection with an unread body went back to the pool")
	}
}

func TestH1ClientInformational(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	h := newTestH1(t, &failRT{})
	var got []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		got = append(got, code)
		link = hdr.Get("Link")
		return nil
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	resp, body, err := readAll(h, h1Req(t, ctx, "GET", up.addr(), "/"))
	if err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("final answer: %v %q %v", resp, body, err)
	}
	if len(got) != 1 || got[0] != 103 || link == "" {
		t.Errorf("1xx seen: %v, Link %q", got, link)
	}
}

func TestH1ClientFallback(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true
	})
	tests := []struct {
		name string
		mod  func(*http.Request)
	}{
		{"large body", func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", maxDirectBody+1)))
			r.ContentLength = maxDirectBody + 1
		}},
		{"body of unknown length", func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("x")); r.ContentLength = -1 }},
		{"upgrade", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }},
		{"expect", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }},
		{"close", func(r *http.Request) { r.Close = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &failRT{}
			h := newTestH1(t, fb)
			req := h1Req(t, context.Background(), "PUT", up.addr(), "/")
			tt.mod(req)
			_, _ = h.RoundTrip(req)
			if fb.used.Load() != 1 {
				t.Errorf("request did not go to the fallback transport")
			}
		})
	}
}

func TestH1ClientPool(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	h := newTestH1(t, &failRT{}) // at most 4 idle
	// Eight answers open at once need eight connections; four stay idle.
	var bodies []io.ReadCloser
	for range 8 {
		resp, err := h.RoundTrip(h1Req(t, context.Background(), "GET", up.addr(), "/"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		b.Close()
	}
	h.mu.Lock()
	n := len(h.idle[up.addr()])
	h.mu.Unlock()
	if n != 4 || up.conns.Load() != 8 {
		t.Fatalf("idle = %d (want 4), connections = %d (want 8)", n, up.conns.Load())
	}
	// Connections idle past idleFor are closed by the sweep.
	h.mu.Lock()
	for _, pc := range h.idle[up.addr()] {
		pc.idleAt = pc.idleAt.Add(-2 * h.idleFor)
	}
	h.mu.Unlock()
	h.sweepIdle()
	h.mu.Lock()
	n = len(h.idle[up.addr()])
	h.mu.Unlock()
	if n != 0 {
		t.Fatalf("idle after sweep = %d, want 0", n)
	}
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/")); err != nil {
		t.Fatal(err)
	}
	if up.conns.Load() != 9 {
		t.Errorf("connections = %d, want 9 (a new one after the sweep)", up.conns.Load())
	}
}

// TestClusterReusesUpstreamConnections runs sequential requests through a
// cluster of each HTTP/1 protocol and counts the upstream's connections.
func TestClusterReusesUpstreamConnections(t *testing.T) {
	for _, proto := range []string{ProtoHTTP1, ProtoAuto} {
		t.Run(proto, func(t *testing.T) {
			up := newScripted(t, func(_ int, req *http.Request) (string, bool) {
				if req.Method == "HEAD" {
					return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
			})
			cl := cluster("c", up.addr())
			cl.Protocol = proto
			c := newSet(t, Options{}, cl).Cluster("c")
			for i := range 20 {
				method := []string{"GET", "HEAD", "DELETE", "OPTIONS"}[i%4]
				r := do(c, newReq(t, method, "/"))
				if r.err != nil || r.status != 200 {
					t.Fatalf("request %d: %+v", i, r)
				}
			}
			if got := up.conns.Load(); got != 1 {
				t.Errorf("20 sequential requests used %d connections, want 1", got)
			}
			if got := counterValue(t, c.m.connOpened); got != 1 {
				t.Errorf("connections opened metric = %v, want 1", got)
			}
		})
	}
}

// TestClusterCountsStaleConnections: an upstream that closes every
// connection after its answer; the second GET finds its pooled connection
// closed, is sent again on a new one, and the metric says so.
func TestClusterCountsStaleConnections(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	c := newSet(t, Options{}, cluster("c", up.addr())).Cluster("c")
	for i := range 2 {
		if r := do(c, newReq(t, "GET", "/")); r.err != nil || r.body != "ok" {
			t.Fatalf("request %d: %+v", i, r)
		}
		<-up.closed
	}
	if got := counterValue(t, c.m.connStale); got != 1 {
		t.Errorf("stale connections = %v, want 1", got)
	}
	if got := counterValue(t, c.m.connOpened); got != 2 {
		t.Errorf("connections opened = %v, want 2", got)
	}
}

// FuzzH1WriteRequest: whatever a filter puts in a request, a head that
// writeRequest accepts parses back as exactly one request with the same
// method, target, host and header values; nothing can smuggle a second
// request or an extra header in.
func FuzzH1WriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "svc.example", "X-Test", "value")
	f.Add("POST", "/", "h:80", "X-A", "v\r\nX-Injected: 1")
	f.Add("GET", "/x HTTP/1.1\r\nHost: evil\r\n\r\nGET /", "h", "K", "v")
	f.Add("PUT", "/%0d%0a", "h\r\n", "X A", " spaced ")
	f.Fuzz(func(t *testing.T, method, path, host, key, value string) {
		req := &http.Request{Method: method, URL: &url.URL{Path: path}, Host: host, Header: http.Header{key: {value}}}
		var buf bytes.Buffer
		pc := &h1Conn{bw: bufio.NewWriter(&buf)}
		if err := pc.writeRequest(req); err != nil {
			if !errors.Is(err, errInvalidRequest) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		if err := pc.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(buf.Bytes()))
		got, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("accepted head does not parse: %v\n%q", err, buf.String())
		}
		if br.Buffered() != 0 {
			t.Fatalf("bytes after the head: %q", buf.String())
		}
		if got.Method != method || got.Host != host || got.RequestURI != req.URL.RequestURI() {
			t.Fatalf("request line/host changed: %q %q %q\n%q", got.Method, got.RequestURI, got.Host, buf.String())
		}
		want := 1 // the header, unless writeRequest owns that name
		ck := http.CanonicalHeaderKey(key)
		if reqExcluded[key] || key != ck {
			want = -1 // not compared: written by writeRequest or not canonical
		}
		if key == "User-Agent" && strings.TrimSpace(value) == "" {
			want = 0
		}
		if want == 1 && (len(got.Header[ck]) != 1 || got.Header[ck][0] != textproto.TrimString(value)) {
			t.Fatalf("header %q = %q, want %q\n%q", ck, got.Header[ck], textproto.TrimString(value), buf.String())
		}
		extra := len(got.Header)
		for _, k := range []string{"Content-Length", ck} {
			if _, ok := got.Header[k]; ok {
				extra--
			}
		}
		if extra != 0 {
			t.Fatalf("unexpected headers %v\n%q", got.Header, buf.String())
		}
	})
}

// closeCounter is a request body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed atomic.Int64
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestH1ClientSendsSmallBodies(t *testing.T) {
	up := newScripted(t, func(_ int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true
	})
	fb := &failRT{}
	h := newTestH1(t, fb)
	// Sizes below, around and above the 4 KiB write buffer, up to the limit.
	sizes := []int{1, 100, 3900, 4096, 10000, maxDirectBody}
	for i, n := range sizes {
		body := &closeCounter{Reader: strings.NewReader(strings.Repeat(string(rune('a'+i)), n))}
		req := h1Req(t, context.Background(), "POST", up.addr(), "/up")
		req.Body, req.ContentLength = body, int64(n)
		if _, _, err := readAll(h, req); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if body.closed.Load() != 1 {
			t.Errorf("%d bytes: body closed %d times, want 1", n, body.closed.Load())
		}
	}
	for i, n := range sizes {
		got := up.head(i)
		if got.ContentLength != int64(n) {
			t.Errorf("request %d: upstream saw Content-Length %d, want %d", i, got.ContentLength, n)
		}
	}
	if up.conns.Load() != 1 || fb.used.Load() != 0 {
		t.Errorf("connections = %d (want 1), fallback used %d times (want 0)", up.conns.Load(), fb.used.Load())
	}
}

// TestH1ClientBodyFaults: a body shorter or longer than its
// Content-Length, or one that fails, fails the request with the body's
// error; the connection is not reused and the body is closed.
func TestH1ClientBodyFaults(t *testing.T) {
	boom := errors.New("client went away mid-body")
	tests := []struct {
		name string
		body io.Reader
		cl   int64
		want error
	}{
		{"short", strings.NewReader("abc"), 10, errBodyLength},
		{"long", strings.NewReader("abcdefghijk"), 10, errBodyLength},
		{"read error", io.MultiReader(strings.NewReader("ab"), iotestErr{boom}), 10, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newScripted(t, func(int, *http.Request) (string, bool) {
				return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true
			})
			h := newTestH1(t, &failRT{})
			body := &closeCounter{Reader: tt.body}
			req := h1Req(t, context.Background(), "POST", up.addr(), "/")
			req.Body, req.ContentLength = body, tt.cl
			_, err := h.RoundTrip(req)
			var be *bodyError
			if !errors.Is(err, tt.want) || !errors.As(err, &be) {
				t.Fatalf("err = %v, want a bodyError wrapping %v", err, tt.want)
			}
			if body.closed.Load() != 1 {
				t.Errorf("body closed %d times, want 1", body.closed.Load())
			}
			h.mu.Lock()
			n := len(h.idle[up.addr()])
			h.mu.Unlock()
			if n != 0 {
				t.Error("the connection of a failed request went back to the pool")
			}
		})
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestH1ClientResendsBodyOnDeadReuse: a PUT whose body can be had again
// (GetBody) is sent again, body included, when its pooled connection turns
// out dead; one whose body cannot is not.
func TestH1ClientResendsBodyOnDeadReuse(t *testing.T) {
	up := newScripted(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	h := newTestH1(t, &failRT{})
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/")); err != nil {
		t.Fatal(err)
	}
	killPooled := func() {
		h.mu.Lock()
		pc := h.idle[up.addr()][0]
		h.mu.Unlock()
		pc.br.Reset(eofReader{})
	}
	put := func(replayable bool) (*http.Request, error) {
		req, err := http.NewRequest("PUT", "http://"+up.addr()+"/doc", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		if !replayable {
			req.GetBody = nil
		}
		_, _, err = readAll(h, req)
		return req, err
	}
	killPooled()
	if _, err := put(true); err != nil {
		t.Fatalf("replayable PUT after a dead reuse: %v", err)
	}
	if got := up.head(2); got.Method != "PUT" || got.ContentLength != 7 {
		t.Errorf("resent request: %s, Content-Length %d", got.Method, got.ContentLength)
	}
	killPooled()
	var stale *staleError
	if _, err := put(false); !errors.As(err, &stale) {
		t.Fatalf("PUT without GetBody after a dead reuse: err = %v, want a staleError", err)
	}
}

// TestH1ClientOverTLS: the direct path over TLS 1.3 (whose server sends
// session tickets after the handshake, bytes the client has not asked
// for) waits for answers on the socket beneath and keeps one connection.
func TestH1ClientOverTLS(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+":"+string(b))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cfg := &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS13}
	d := net.Dialer{Timeout: time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return tc, nil
	}
	h := newH1Client(dial, &failRT{}, 4)
	t.Cleanup(h.close)
	addr := srv.Listener.Addr().String()
	for i := range 10 {
		method, body, want := "GET", io.Reader(nil), "GET:"
		if i%2 == 1 {
			method, body, want = "POST", strings.NewReader("payload"), "POST:payload"
		}
		// A wait that missed its answer would hang: bound every request.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := readAll(h, req)
		cancel()
		if err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 requests over TLS used %d connections, want 1", n)
	}
}

// readingRT is a fallback that reads the whole request body, reports it,
// and answers 200.
type readingRT struct {
	called chan struct{}
	got    chan string
}

func newReadingRT() *readingRT {
	return &readingRT{called: make(chan struct{}, 1), got: make(chan string, 1)}
}

func (r *readingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.called <- struct{}{}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	r.got <- string(b)
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
}

// TestProbeChunkedBody: a body of unknown length (chunked) is read ahead
// once before the transport sends anything: a failing first read fails the
// request as the client's, data passes through whole and in order, and a
// client that sends nothing yet does not hold the request back.
func TestProbeChunkedBody(t *testing.T) {
	newReq := func(body io.ReadCloser) *http.Request {
		req, err := http.NewRequest("POST", "http://127.0.0.1:1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Body, req.ContentLength = body, -1
		return req
	}
	t.Run("bad first chunk", func(t *testing.T) {
		fb := newReadingRT()
		h := newTestH1(t, fb)
		body := &closeCounter{Reader: iotestErr{clientFault{}}}
		_, err := h.RoundTrip(newReq(body))
		if !isClientFault(err) {
			t.Fatalf("err = %v, want the client's fault", err)
		}
		if len(fb.called) != 0 {
			t.Error("the transport was called: the head would have gone upstream")
		}
		if body.closed.Load() != 1 {
			t.Errorf("body closed %d times, want 1", body.closed.Load())
		}
	})
	t.Run("data passes whole", func(t *testing.T) {
		fb := newReadingRT()
		h := newTestH1(t, fb)
		want := strings.Repeat("0123456789", 1000) // more than the probe's buffer
		if _, err := h.RoundTrip(newReq(io.NopCloser(strings.NewReader(want)))); err != nil {
			t.Fatal(err)
		}
		if got := <-fb.got; got != want {
			t.Fatalf("transport read %d bytes, want %d in order", len(got), len(want))
		}
	})
	t.Run("silent client", func(t *testing.T) {
		fb := newReadingRT()
		h := newTestH1(t, fb)
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		done := make(chan error, 1)
		go func() { _, err := h.RoundTrip(newReq(pr)); done <- err }()
		// The transport is called although the client has sent nothing...
		select {
		case <-fb.called:
		case <-time.After(5 * time.Second):
			t.Fatal("the probe held a silent client's request back")
		}
		// ...and what the client sends then arrives whole.
		_, _ = io.WriteString(pw, "late")
		pw.Close()
		if got := <-fb.got; got != "late" {
			t.Fatalf("transport read %q, want %q", got, "late")
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expect 100-continue is not probed", func(t *testing.T) {
		fb := newReadingRT()
		h := newTestH1(t, fb)
		body := &closeCounter{Reader: iotestErr{clientFault{}}}
		req := newReq(body)
		req.Header.Set("Expect", "100-continue")
		_, _ = h.RoundTrip(req)
		select {
		case <-fb.called:
		default:
			t.Fatal("a request with Expect: 100-continue had its body read before the transport")
		}
	})
	t.Run("close while the probe waits", func(t *testing.T) {
		pr, pw := io.Pipe()
		p := &probedBody{body: pr, buf: make([]byte, 16), done: make(chan struct{})}
		go p.first()
		closed := make(chan struct{})
		go func() { p.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close waited for the client")
		}
		pw.Close() // the pending read returns; the deferred close runs
		<-p.done
	})
}

// TestH1ClientConcurrentExchanges: many concurrent requests over one
// cluster, with bodies, HEADs, announced and unannounced connection
// closes by the upstream; every answer must be the answer to its own
// request (a pooling or framing slip would hand one request another's
// answer or body). Bounded: 16 workers x 150 requests on loopback.
func TestH1ClientConcurrentExchanges(t *testing.T) {
	var served atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		b, _ := io.ReadAll(r.Body)
		id := r.URL.Query().Get("id")
		switch {
		case n%7 == 0:
			w.Header().Set("Connection", "close") // announced close
		case n%11 == 0:
			// Unannounced close right after the answer, as a keep-alive
			// timeout would do it.
			w.Header().Set("Content-Length", strconv.Itoa(len(id)+len(b)))
			_, _ = io.WriteString(w, id+string(b))
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
			return
		}
		w.Header().Set("X-Id", id)
		_, _ = io.WriteString(w, id+string(b))
	}))
	t.Cleanup(up.Close)
	c := newSet(t, Options{}, cluster("c", up.Listener.Addr().String())).Cluster("c")
	const workers, each = 16, 150
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-r%d", w, i)
				method, body := "GET", ""
				switch i % 4 {
				case 1:
					method, body = "POST", strings.Repeat("b", i*37%5000)
				case 2:
					method = "HEAD"
				}
				req, err := http.NewRequest(method, "http://upstream/x?id="+id, strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				if body == "" {
					req.Body, req.ContentLength = http.NoBody, 0
				}
				if method == "POST" {
					// A POST caught by an unannounced close may not be
					// resent (net/http fails ~2 % of them in the same
					// setup); with an idempotency key it may, and then
					// every request must succeed.
					req.Header.Set("Idempotency-Key", id)
				}
				r := do(c, req)
				want := id + body
				if method == "HEAD" {
					want = ""
				}
				if r.err != nil || r.status != 200 || r.body != want {
					errs <- fmt.Errorf("%s %s: status %d, body %d bytes (want %d), err %v", method, id, r.status, len(r.body), len(want), r.err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	opened := counterValue(t, c.m.connOpened)
	t.Logf("%d requests, %v connections opened, %v stale found", workers*each, opened, counterValue(t, c.m.connStale))
	if opened >= workers*each/2 {
		t.Errorf("%v connections for %d requests: keep-alive is not working", opened, workers*each)
	}
}

// TestH1ClientBoundsTheAnswerHead: an upstream that sends an endless header
// block fails the request once the head passes the limit, instead of
// making the proxy buffer it; a head under the limit passes.
func TestH1ClientBoundsTheAnswerHead(t *testing.T) {
	header := func(n int) string {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("v", 100))
		}
		return b.String()
	}
	small, big := header(8<<10), header(256<<10)
	up := newScripted(t, func(_ int, req *http.Request) (string, bool) {
		if req.URL.Path == "/big" {
			return "HTTP/1.1 200 OK\r\n" + big + "Content-Length: 0\r\n\r\n", true
		}
		return "HTTP/1.1 200 OK\r\n" + small + "Content-Length: 0\r\n\r\n", true
	})
	h := newTestH1(t, &failRT{})
	h.maxHead = 16 << 10
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/small")); err != nil {
		t.Fatalf("8 KiB head under a 16 KiB limit: %v", err)
	}
	if _, err := h.RoundTrip(h1Req(t, context.Background(), "GET", up.addr(), "/big")); !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("256 KiB head: err = %v, want errHeadTooLarge", err)
	}
	// The limit is for the head only: the next answer on a new connection
	// is read normally.
	if _, _, err := readAll(h, h1Req(t, context.Background(), "GET", up.addr(), "/small")); err != nil {
		t.Fatalf("after a refused head: %v", err)
	}
}
