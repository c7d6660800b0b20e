//go:build unix

package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestH1ClientDropsConnectionWithUnsolicitedBytes: an upstream that, after
// its answer, sends a second whole answer nobody asked for (while the
// connection sits idle) must not have it read as the next request's
// answer: the reuse check drops the connection.
func TestH1ClientDropsConnectionWithUnsolicitedBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	released, extraSent := make(chan struct{}), make(chan struct{})
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
					if n == 1 && req.URL.Path == "/first" {
						// Once the client is done with the answer, on its
						// own, an answer to nothing.
						<-released
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbogus")
						close(extraSent)
					}
				}
			}()
		}
	}()
	h := newTestH1(t, &failRT{})
	addr := ln.Addr().String()
	if _, body, err := readAll(h, h1Req(t, context.Background(), "GET", addr, "/first")); err != nil || body != "real" {
		t.Fatalf("first: %q, %v", body, err)
	}
	close(released)
	<-extraSent
	// The bogus bytes must be on our socket before the next request: wait
	// until the kernel has them (the peek itself is what is under test).
	h.mu.Lock()
	pc := h.idle[addr][0]
	h.mu.Unlock()
	waitFor(t, "the unsolicited bytes to arrive", 5*time.Second, func() bool {
		var b [1]byte
		n := 0
		_ = pc.raw.Read(func(fd uintptr) bool {
			n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return true
		})
		return n == 1
	})
	if _, body, err := readAll(h, h1Req(t, context.Background(), "GET", addr, "/second")); err != nil || body != "real" {
		t.Fatalf("second GET got %q (%v): the unsolicited answer was taken for its own", body, err)
	}
	if conns.Load() != 2 {
		t.Errorf("connections = %d, want 2 (the tainted one dropped)", conns.Load())
	}
}
