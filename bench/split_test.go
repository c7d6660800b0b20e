package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWasmSplitPerRequest(t *testing.T) {
	body := `[{"kind":"wasm","calls":300,"acquire_ns_total":3000000,"call_ns_total":9000000,"host_ns_total":3000000,"host_calls":900},
	          {"kind":"process","calls":5}]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/plugins" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	end := wasmTimes(strings.TrimPrefix(srv.URL, "http://"))
	if end == nil {
		t.Fatal("no totals read")
	}
	sp := end.perRequest(&wasmTotals{calls: 100, acquire: 1e6, call: 3e6, host: 1e6, hostCalls: 300}, 100)
	want := WasmSplit{Calls: 2, AcquireUs: 20, GuestUs: 40, HostUs: 20, HostCalls: 6}
	if *sp != want {
		got, _ := json.Marshal(sp)
		t.Fatalf("split = %s, want %+v", got, want)
	}
	if wasmTimes("") != nil {
		t.Fatal("no admin should give no totals")
	}
}

func TestMetricsSum(t *testing.T) {
	m := metricsText(`# HELP wasmgate_listener_connections_total x
wasmgate_listener_connections_total{listener="inbound",transport="tcp"} 3
wasmgate_listener_connections_total{listener="inbound",transport="quic"} 1
wasmgate_listener_connections_total{listener="outbound",transport="tcp"} 7
wasmgate_listener_connections_totalx{listener="inbound"} 100
`)
	if got := m.sum("wasmgate_listener_connections_total", `listener="inbound"`); got != 4 {
		t.Fatalf("sum = %v, want 4", got)
	}
}

func TestPairLine(t *testing.T) {
	rs := []result{{Name: "direct", P50: 700e3}, {Name: "bare", P50: 1000e3}, {Name: "sidecar-pair", P50: 1300e3}}
	if got := pairLine(rs); !strings.Contains(got, "2.00x") {
		t.Fatalf("pairLine = %q", got)
	}
	if got := pairLine(rs[:2]); got != "" {
		t.Fatalf("pairLine without a pair = %q", got)
	}
}

func TestBaselineLine(t *testing.T) {
	rs := []result{
		{Name: "stdlib", RPS: 1000, CPUPerReq: 100},
		{Name: "bare", RPS: 1100, CPUPerReq: 80},
		{Name: "stdlib-post", Skipped: "not built"},
	}
	got := baselineLine(rs, "bare", "stdlib")
	if !strings.Contains(got, "0.80x the CPU") || !strings.Contains(got, "1.10x the requests/s") {
		t.Fatalf("baselineLine = %q", got)
	}
	if got := baselineLine(rs, "bare-post", "stdlib-post"); got != "" {
		t.Fatalf("baselineLine with a skipped baseline = %q", got)
	}
}
