package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"
	"time"
)

// TestBehindReverseProxy runs a cluster as the Transport of
// httputil.ReverseProxy, as the proxy core does, with a streaming response
// that is still in flight when the Set is closed (a reload).
func TestBehindReverseProxy(t *testing.T) {
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			_ = rc.Flush()
			time.Sleep(15 * time.Millisecond)
		}
	})
	s := newSet(t, Options{}, cluster("c", b.addr()))
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "c"
			ctx := WithCallOptions(pr.Out.Context(), CallOptions{Timeout: 30 * time.Second})
			pr.Out = pr.Out.WithContext(ctx)
		},
		Transport: s.Cluster("c"),
	}
	front := httptest.NewServer(rp)
	defer front.Close()
	resp, err := http.Get(front.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("chunk 0\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream cut after Close: %v", err)
	}
	if got := string(first) + string(rest); got != "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n" || strings.Count(got, "\n") != 5 {
		t.Fatalf("body %q", got)
	}
}
