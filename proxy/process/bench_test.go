package process

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkProcessFilter runs add-header as a process plugin through both
// phases, as the chain would, from parallel goroutines.
func BenchmarkProcessFilter(b *testing.B) {
	h, err := NewHost(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	e := &env{h: h}
	f, err := e.buildB(b, bins["add-header"], `{"request":{"X-Bench":"yes"},"response":{"X-Bench-Resp":"yes"}}`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			x := exchange("GET", "/bench?x=1", "")
			x.Request.Header.Set("User-Agent", "bench")
			x.Request.Header.Set("Accept", "*/*")
			if next, err := f.HandleRequest(context.Background(), x); err != nil || !next {
				b.Fatalf("next=%v err=%v", next, err)
			}
			x.Response.Header = http.Header{"Content-Type": {"text/plain"}}
			x.Response.Body = io.NopCloser(strings.NewReader("ok\n"))
			if err := f.HandleResponse(context.Background(), x); err != nil {
				b.Fatal(err)
			}
			if x.Response.Header.Get("X-Bench-Resp") != "yes" {
				b.Fatal("response header missing")
			}
		}
	})
}
