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
