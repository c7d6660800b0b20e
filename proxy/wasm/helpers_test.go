package wasm

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

const (
	guestHeader  = "proxy/wasm/testdata/guests/header"
	guestAll     = "proxy/wasm/testdata/guests/all"
	guestHostile = "proxy/wasm/testdata/guests/hostile"
	guestBadSig  = "proxy/wasm/testdata/guests/badsig"
)

// testHost makes a Host with the suite's shared compilation cache.
func testHost(t testing.TB, opts HostOptions) (*Host, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.CacheDir = wasmbuild.CacheDir()
	if opts.Logger == nil {
		if tt, ok := t.(*testing.T); ok && testing.Verbose() {
			opts.Logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
		} else {
			opts.Logger = zap.NewNop()
		}
	}
	opts.Metrics = reg
	h, err := NewHost(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("Host.Close: %v", err)
		}
	})
	return h, reg
}

type buildOpt func(*filter.Spec, *filter.Deps)

func withConfig(v any) buildOpt {
	return func(s *filter.Spec, _ *filter.Deps) {
		b, _ := json.Marshal(v)
		s.Config = b
	}
}

func withSettings(kv ...string) buildOpt {
	return func(s *filter.Spec, _ *filter.Deps) {
		s.Settings = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Settings[kv[i]] = kv[i+1]
		}
	}
}

func withStore(st filter.Store) buildOpt {
	return func(_ *filter.Spec, d *filter.Deps) { d.Store = st }
}

func withName(n string) buildOpt {
	return func(s *filter.Spec, _ *filter.Deps) { s.Name = n }
}

// buildGuest builds the guest package and a filter from it.
func buildGuest(t testing.TB, h *Host, pkg string, opts ...buildOpt) *plugin {
	t.Helper()
	f, err := tryBuild(t, h, pkg, opts...)
	if err != nil {
		t.Fatalf("build %s: %v", pkg, err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

func tryBuild(t testing.TB, h *Host, pkg string, opts ...buildOpt) (*plugin, error) {
	t.Helper()
	spec := filter.Spec{Kind: "wasm", Path: wasmbuild.Build(t, pkg)}
	deps := filter.Deps{}
	for _, o := range opts {
		o(&spec, &deps)
	}
	f, err := h.Factory().Build(context.Background(), spec, deps)
	if err != nil {
		return nil, err
	}
	return f.(*plugin), nil
}

func newExchange(method, target string, hdr ...string) *filter.Exchange {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return filter.NewExchange(r, filter.Properties{
		ClientAddr: "192.0.2.7:5555", ClientIP: "192.0.2.7", Route: "r1", Mode: "edge",
		RequestID: "req-1", Protocol: "HTTP/1.1",
	})
}

// memStore is a minimal filter.Store for tests of the host functions; the
// real stores live in proxy/store and have their own tests.
type memStore struct {
	mu   sync.Mutex
	vals map[string][]byte
	ctrs map[string]int64
	fail bool
}

func newMemStore() *memStore {
	return &memStore{vals: map[string][]byte{}, ctrs: map[string]int64{}}
}

func (m *memStore) Incr(_ context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return 0, 0, errStoreDown
	}
	m.ctrs[key] += delta
	return m.ctrs[key], window, nil
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return nil, false, errStoreDown
	}
	v, ok := m.vals[key]
	return v, ok, nil
}

func (m *memStore) Set(_ context.Context, key string, val []byte, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errStoreDown
	}
	m.vals[key] = val
	return nil
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errStoreDown
	}
	delete(m.vals, key)
	return nil
}

type storeErr string

func (e storeErr) Error() string { return string(e) }

const errStoreDown = storeErr("store down")

var _ http.Handler = nil

// metricValue gathers reg and returns the value of the series of family
// name whose plugin label is plugin (histograms: the sample count).
func metricValue(t testing.TB, reg *prometheus.Registry, name, plugin string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					switch {
					case m.Counter != nil:
						return m.Counter.GetValue()
					case m.Gauge != nil:
						return m.Gauge.GetValue()
					case m.Histogram != nil:
						return float64(m.Histogram.GetSampleCount())
					}
				}
			}
		}
	}
	t.Fatalf("metric %s{plugin=%q} not found", name, plugin)
	return 0
}
