package observe

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = NewRequestID()
		}
	})
}

func BenchmarkMetricsRequest(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RequestStarted()
			m.RequestDone("api", http.MethodGet, 200, 3*time.Millisecond, 100, 1000)
		}
	})
}

func BenchmarkMetricsFilterDone(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.FilterDone("jwt-auth", "wasm", "continue", 20*time.Microsecond)
		}
	})
}

func BenchmarkAccessLog(b *testing.B) {
	al, err := NewAccessLog(config.AccessLog{Sample: 1}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer al.Close()
	e := &AccessEntry{
		Start: time.Now(), Duration: time.Millisecond, Method: "GET", Host: "api.example.com", Path: "/v1/users/42",
		Proto: "HTTP/1.1", Status: 200, BytesOut: 512, ClientAddr: "127.0.0.1:40000", Listener: "public",
		Route: "api", Cluster: "users", Upstream: "127.0.0.1:8080", RequestID: NewRequestID(), TraceID: NewRequestID(),
		Decisions: []filter.Decision{{Filter: "jwt-auth", Action: "continue", Took: 30 * time.Microsecond}},
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			al.Log(e)
		}
	})
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

func BenchmarkRecorderWrite(b *testing.B) {
	w := &discardWriter{h: http.Header{}}
	rec := NewResponseRecorder(w)
	p := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		rec.Reset(w)
		rec.WriteHeader(200)
		_, _ = rec.Write(p)
	}
}
