package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func request(ip string) *http.Request {
	r := sdktest.NewRequest("GET", "/", "")
	r.RemoteAddr = ip + ":40000"
	return r
}

func TestClientCounter(t *testing.T) {
	h := sdktest.New(t)
	if err := h.Configure(`{"window":"10s"}`); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		ip      string
		advance time.Duration
		want    string
	}{
		{"10.0.0.1", 0, "1"},
		{"10.0.0.1", time.Second, "2"},
		{"10.0.0.2", 0, "1"},
		{"10.0.0.1", 0, "3"},
		{"10.0.0.1", 9 * time.Second, "1"}, // 10s after its first request: new window
		{"10.0.0.2", 0, "2"},               // its window started at 1s, still open
		{"10.0.0.2", time.Second, "1"},
	}
	for i, s := range steps {
		h.Advance(s.advance)
		res := h.Run(request(s.ip))
		if got := res.Header.Get("X-Client-Requests"); got != s.want {
			t.Fatalf("step %d (%s): count header %q, want %q", i, s.ip, got, s.want)
		}
	}
	m, ok := h.Metric("client_counter_requests_total")
	if !ok || m.Kind != "counter" || m.Value != float64(len(steps)) {
		t.Errorf("metric = %+v (defined %v), want counter %d", m, ok, len(steps))
	}
	if got := h.Counter("client-counter:10.0.0.1"); got != 1 {
		t.Errorf("shared counter = %d, want 1", got)
	}
}

func TestClientCounterConfig(t *testing.T) {
	for _, cfg := range []string{`{"window":"5ms"}`, `{"window":"soon"}`, `{"header":""}`} {
		if sdktest.ConfigError(t, cfg) == nil {
			t.Errorf("config %s accepted", cfg)
		}
	}
}
