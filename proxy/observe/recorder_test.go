package observe

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// recorded serves h wrapped in a ResponseRecorder and hands the recorder to
// got after the handler returns.
func recorded(h http.HandlerFunc, got chan<- *ResponseRecorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := NewResponseRecorder(w)
		h(rec, r)
		got <- rec
	})
}

func TestRecorderStatusAndBytes(t *testing.T) {
	tests := []struct {
		name   string
		h      http.HandlerFunc
		status int
		bytes  int64
	}{
		{"implicit 200", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }, 200, 5},
		{"explicit", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(404)
			_, _ = io.WriteString(w, "nope")
		}, 404, 4},
		{"early hints then 201", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}, 201, 0},
		{"read from", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.Copy(w, strings.NewReader(strings.Repeat("x", 100000)))
		}, 200, 100000},
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *ResponseRecorder, 1)
			srv := httptest.NewServer(recorded(tt.h, got))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rec := <-got
			if rec.Status() != tt.status || rec.BytesWritten() != tt.bytes {
				t.Fatalf("status %d bytes %d, want %d %d", rec.Status(), rec.BytesWritten(), tt.status, tt.bytes)
			}
			if int64(len(body)) != tt.bytes {
				t.Fatalf("client got %d bytes", len(body))
			}
		})
	}
}

func TestRecorderFlushStreams(t *testing.T) {
	release := make(chan struct{})
	got := make(chan *ResponseRecorder, 1)
	srv := httptest.NewServer(recorded(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	}, got))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk = %q, %v (not flushed?)", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "second\n" {
		t.Fatalf("rest = %q", rest)
	}
	if rec := <-got; rec.BytesWritten() != 13 {
		t.Fatalf("bytes = %d", rec.BytesWritten())
	}
}

func TestRecorderHijackHTTP1(t *testing.T) {
	got := make(chan *ResponseRecorder, 1)
	srv := httptest.NewServer(recorded(func(w http.ResponseWriter, _ *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = c.Write([]byte("echo:" + line))
	}, got))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v, %v", resp, err)
	}
	_, _ = io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:ping\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
	rec := <-got
	if !rec.Hijacked() || rec.Status() != 101 || !rec.Written() {
		t.Fatalf("hijacked=%v status=%d", rec.Hijacked(), rec.Status())
	}
}

func TestRecorderHTTP2(t *testing.T) {
	got := make(chan *ResponseRecorder, 1)
	errs := make(chan [3]error, 1)
	srv := httptest.NewUnstartedServer(recorded(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_, _, hj := rc.Hijack()
		dl := rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		push := w.(http.Pusher).Push("/style.css", nil)
		errs <- [3]error{hj, dl, push}
		_, _ = io.WriteString(w, r.Proto)
	}, got))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Fatalf("served over %q", body)
	}
	e := <-errs
	if !errors.Is(e[0], http.ErrNotSupported) {
		t.Errorf("hijack on h2 = %v, want ErrNotSupported", e[0])
	}
	if e[1] != nil {
		t.Errorf("SetWriteDeadline through Unwrap = %v", e[1])
	}
	if e[2] == nil {
		// Go's client disables push, so the server must refuse it.
		t.Errorf("push accepted by a client that disabled it")
	}
	if rec := <-got; rec.Hijacked() || rec.Status() != 200 || rec.BytesWritten() != 8 {
		t.Fatalf("recorder = hijacked %v status %d bytes %d", rec.Hijacked(), rec.Status(), rec.BytesWritten())
	}
}

func TestRecorderPushUnsupported(t *testing.T) {
	rec := NewResponseRecorder(httptest.NewRecorder())
	if err := rec.Push("/x", nil); !errors.Is(err, http.ErrNotSupported) {
		t.Fatalf("push = %v", err)
	}
	if _, _, err := rec.Hijack(); err == nil {
		t.Fatal("hijack of a ResponseRecorder succeeded")
	}
	rec.Reset(httptest.NewRecorder())
	if rec.Status() != 0 || rec.BytesWritten() != 0 || rec.Written() {
		t.Fatal("Reset kept state")
	}
}

func TestCountBody(t *testing.T) {
	got := make(chan int64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc := CountBody(r)
		_, _ = io.Copy(io.Discard, r.Body)
		got <- bc.N()
	}))
	defer srv.Close()
	for _, n := range []int{0, 1, 70000} {
		resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("a", n)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c := <-got; c != int64(n) {
			t.Fatalf("counted %d, sent %d", c, n)
		}
	}
	var nilCounter *BodyCounter
	if nilCounter.N() != 0 {
		t.Fatal("nil counter")
	}
}
