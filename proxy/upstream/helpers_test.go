package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// backend is a loopback upstream that counts hits and names itself in the
// X-Backend response header.
type backend struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// cluster returns a cluster config over addrs with config defaults applied
// by newSet.
func cluster(name string, addrs ...string) config.Cluster {
	cl := config.Cluster{Name: name}
	for _, a := range addrs {
		cl.Endpoints = append(cl.Endpoints, config.Endpoint{Address: a})
	}
	return cl
}

// newSet applies the config package's defaults to cls and builds a Set that
// is closed when the test ends.
func newSet(t *testing.T, opts Options, cls ...config.Cluster) *Set {
	t.Helper()
	cfg := config.Config{Clusters: cls}
	cfg.ApplyDefaults()
	s, err := NewSet(context.Background(), cfg.Clusters, opts)
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newReq(t *testing.T, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://upstream"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "192.0.2.10:5555"
	return req
}

// result is what one call through a cluster produced.
type result struct {
	status  int
	backend string
	body    string
	err     error
}

// do sends req through c and reads the whole response.
func do(c *Cluster, req *http.Request) result {
	resp, err := c.RoundTrip(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, backend: resp.Header.Get("X-Backend"), body: string(b), err: err}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func endpointStatus(s *Set, cluster, addr string) (EndpointStatus, bool) {
	for _, cs := range s.Status() {
		if cs.Name != cluster {
			continue
		}
		for _, e := range cs.Endpoints {
			if e.Address == addr {
				return e, true
			}
		}
	}
	return EndpointStatus{}, false
}

func errIs(err, target error) bool { return errors.Is(err, target) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
