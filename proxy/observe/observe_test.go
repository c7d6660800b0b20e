package observe

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantErr             bool
		check               func(t *testing.T, out string)
	}{
		{name: "json", level: "info", format: "json", check: func(t *testing.T, out string) {
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &m); err != nil {
				t.Fatalf("not JSON: %q", out)
			}
			if m["msg"] != "hello" || m["k"] != "v" || m["logger"] != "test" {
				t.Fatalf("fields missing: %v", m)
			}
		}},
		{name: "default format is json", level: "info", format: "", check: func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "{") {
				t.Fatalf("not JSON: %q", out)
			}
		}},
		{name: "console", level: "info", format: "console", check: func(t *testing.T, out string) {
			if strings.HasPrefix(out, "{") || !strings.Contains(out, "hello") || !strings.Contains(out, "INFO") {
				t.Fatalf("not console: %q", out)
			}
		}},
		{name: "bad level", level: "loud", format: "json", wantErr: true},
		{name: "bad format", level: "info", format: "xml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _, err := NewLogger(tt.level, tt.format, &buf)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			log.Named("test").Info("hello", zap.String("k", "v"))
			tt.check(t, buf.String())
		})
	}
}

func TestLoggerLevelAtRuntime(t *testing.T) {
	var buf bytes.Buffer
	log, lvl, err := NewLogger("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	child := log.Named("child")
	child.Debug("hidden")
	if buf.Len() != 0 {
		t.Fatalf("debug logged at info: %q", buf.String())
	}
	lvl.SetLevel(zap.DebugLevel)
	child.Debug("shown")
	if !strings.Contains(buf.String(), "shown") {
		t.Fatalf("debug not logged after SetLevel: %q", buf.String())
	}
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewRequestID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("second NewMetrics on one registry succeeded")
	}
	var _ filter.Observer = m

	m.RequestStarted()
	m.RequestStarted()
	m.RequestStarted()
	m.RequestDone("api", "GET", 200, 3*time.Millisecond, 10, 100)
	m.RequestDone("api", "GET", 200, 5*time.Millisecond, 0, 50)
	m.RequestDone("", "BREW", 404, time.Millisecond, 0, 0)
	m.FilterDone("jwt", "wasm", "respond", 40*time.Microsecond)
	m.FilterDone("jwt", "wasm", "continue", 40*time.Microsecond)
	m.FilterDone("jwt", "wasm", "continue", 40*time.Microsecond)
	m.ReloadDone(nil, "v1")
	m.ReloadDone(errors.New("bad"), "v2")
	m.ReloadDone(nil, "v3")
	m.SetBuildVersion("1.2.3")

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"active", value(t, m.active), 0},
		{"api GET 200", value(t, m.requests.WithLabelValues("api", "GET", "200")), 2},
		{"none OTHER 404", value(t, m.requests.WithLabelValues(NoRoute, "OTHER", "404")), 1},
		{"bytes in", value(t, m.bytesIn.WithLabelValues("api")), 10},
		{"bytes out", value(t, m.bytesOut.WithLabelValues("api")), 150},
		{"filter continue", value(t, m.filterRuns.WithLabelValues("jwt", "wasm", "continue")), 2},
		{"filter respond", value(t, m.filterRuns.WithLabelValues("jwt", "wasm", "respond")), 1},
		{"reload ok", value(t, m.reloads.WithLabelValues("ok")), 2},
		{"reload error", value(t, m.reloads.WithLabelValues("error")), 1},
		{"last ok", value(t, m.lastOK), 1},
		{"config info series", float64(count(t, m.configInfo)), 1},
		{"config info v3", value(t, m.configInfo.WithLabelValues("v3")), 1},
		{"build info series", float64(count(t, m.buildInfo)), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := count(t, m.duration); n != 2 {
		t.Errorf("duration series = %d, want 2", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wasmgate_http_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			h := mt.GetHistogram()
			if h.GetSchema() == 0 && len(h.GetPositiveSpan()) == 0 {
				t.Errorf("duration histogram has no native buckets")
			}
			if len(h.GetBucket()) == 0 {
				t.Errorf("duration histogram has no classic buckets")
			}
		}
	}
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	al, err := NewAccessLog(config.AccessLog{Sample: 1}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	al.Log(&AccessEntry{
		Start: start, Duration: 1500 * time.Microsecond, Method: "GET", Host: "api.example.com",
		Path: "/v1/x", Proto: "HTTP/2.0", Status: 429, BytesIn: 3, BytesOut: 20, ClientAddr: "127.0.0.1:5",
		Listener: "public", Route: "api", Cluster: "c1", Upstream: "127.0.0.1:8080",
		RequestID: "rid", TraceID: "tid",
		Decisions: []filter.Decision{{Filter: "jwt", Action: "continue", Took: time.Millisecond}, {Filter: "rl", Action: "respond", Status: 429}},
	})
	al.Log(&AccessEntry{Start: start, Method: "GET", Status: 502, Error: "upstream: connect refused"})
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg": "access", "ts": "2026-01-02T03:04:05Z", "method": "GET", "host": "api.example.com", "path": "/v1/x",
		"proto": "HTTP/2.0", "status": 429.0, "bytes_in": 3.0, "bytes_out": 20.0, "duration_ms": 1.5,
		"client": "127.0.0.1:5", "listener": "public", "route": "api", "cluster": "c1",
		"upstream": "127.0.0.1:8080", "request_id": "rid", "trace_id": "tid",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, m[k], m[k], v)
		}
	}
	fl, _ := m["filters"].([]any)
	if len(fl) != 2 {
		t.Fatalf("filters = %v", m["filters"])
	}
	if d := fl[1].(map[string]any); d["filter"] != "rl" || d["action"] != "respond" || d["status"] != 429.0 {
		t.Errorf("decision = %v", d)
	}
	if _, ok := m["error"]; ok {
		t.Error("empty error logged")
	}
	var m2 map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m2); err != nil {
		t.Fatal(err)
	}
	if m2["error"] != "upstream: connect refused" {
		t.Errorf("error = %v", m2["error"])
	}
	if _, ok := m2["filters"]; ok {
		t.Error("empty filters logged")
	}
}

func TestAccessLogSampling(t *testing.T) {
	var buf bytes.Buffer
	al, err := NewAccessLog(config.AccessLog{Sample: 0.1}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		al.Log(&AccessEntry{Status: 200})
	}
	for range 10 {
		al.Log(&AccessEntry{Status: 503})
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	ok := strings.Count(buf.String(), `"status":200`)
	errs := strings.Count(buf.String(), `"status":503`)
	// 2000 draws at p=0.1: mean 200, sd ~13.4; 100..300 is over 7 sd.
	if ok < 100 || ok > 300 {
		t.Errorf("sampled 2xx lines = %d, want about 200", ok)
	}
	if errs != 10 {
		t.Errorf("5xx lines = %d, want all 10", errs)
	}
}

func TestAccessLogFileAndDisabled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := NewAccessLog(config.AccessLog{Path: path, Sample: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	al.Log(&AccessEntry{Status: 204, Path: "/p"})
	if err := al.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"path":"/p"`) {
		t.Fatalf("file = %q", b)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	off := false
	al, err = NewAccessLog(config.AccessLog{Enabled: &off}, nil)
	if err != nil || al != nil {
		t.Fatalf("disabled access log = %v, %v", al, err)
	}
	al.Log(&AccessEntry{}) // a nil AccessLog is a no-op
	if _, err := NewAccessLog(config.AccessLog{Sample: 1.5}, nil); err == nil {
		t.Fatal("sample 1.5 accepted")
	}
	if _, err := NewAccessLog(config.AccessLog{Path: filepath.Join(t.TempDir(), "no", "dir", "x.log")}, nil); err == nil {
		t.Fatal("unopenable path accepted")
	}
}

// value collects the single series of c and returns its value.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collect(t, c)
	if len(ms) != 1 {
		t.Fatalf("collected %d series, want 1", len(ms))
	}
	switch m := ms[0]; {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// count returns the number of series c collects.
func count(t *testing.T, c prometheus.Collector) int { return len(collect(t, c)) }

func collect(t *testing.T, c prometheus.Collector) []*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, &d)
	}
	return out
}
