package wasm

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// headerFilter is the native equivalent of the header guest, for the
// baseline chain.
type headerFilter struct{}

func (headerFilter) HandleRequest(_ context.Context, x *filter.Exchange) (bool, error) {
	x.Request.Header["X-Wasm"] = []string{"1"}
	return true, nil
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchChain runs requests through c. Besides wall time per op it reports
// cpu-ns/op (process CPU time per request), which stays meaningful on a
// shared, loaded machine where wall time does not.
func benchChain(b *testing.B, c *filter.Chain) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() {
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		r, _ := http.NewRequest("GET", "http://example.test/bench?q=1", nil)
		for pb.Next() {
			r.Header = http.Header{"Accept": {"*/*"}}
			x := filter.NewExchange(r, filter.Properties{RequestID: "b"})
			ran, next := c.RunRequest(ctx, x)
			if !next {
				b.Fatal("chain stopped")
			}
			c.RunResponse(ctx, x, ran)
			if x.Request.Header.Get("X-Wasm") != "1" {
				b.Fatal("header missing")
			}
		}
	})
}

// BenchmarkWasmFilter measures one header-only Wasm filter through a chain;
// compare with BenchmarkNativeFilter (same work in Go) for the Wasm cost.
func BenchmarkWasmFilter(b *testing.B) {
	// A long call timeout: this measures cost; a loaded CI box must not
	// turn scheduling delays into timeouts.
	for _, tc := range []struct {
		name, pkg string
		opts      []buildOpt
	}{
		// The raw-ABI test guest: the host's own cost.
		{"abi", guestHeader, nil},
		// The same work written with the SDK, as plugin authors do (and as
		// bench/ loads it): the host plus the SDK's guest-side cost.
		{"sdk", "pluginsdk-examples/add-header", []buildOpt{withConfig(map[string]any{"request": map[string]string{"X-Wasm": "1"}})}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, _ := testHost(b, HostOptions{CallTimeout: 5 * time.Second})
			p := buildGuest(b, h, tc.pkg, tc.opts...)
			benchChain(b, &filter.Chain{Entries: []filter.Entry{{Name: "header", Kind: "wasm", Filter: p}}})
		})
	}
}

// BenchmarkNativeFilter is the bare-chain baseline for BenchmarkWasmFilter.
func BenchmarkNativeFilter(b *testing.B) {
	benchChain(b, &filter.Chain{Entries: []filter.Entry{{Name: "header", Kind: "native", Filter: headerFilter{}}}})
}
