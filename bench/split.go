package main

import (
	"encoding/json"
	"net/http"
	"time"
)

// WasmSplit is where a Wasm scenario's plugin time went, per request.
type WasmSplit struct {
	Calls     float64 `json:"guest_calls"`
	AcquireUs float64 `json:"acquire_us"`
	GuestUs   float64 `json:"guest_us"`
	HostUs    float64 `json:"host_us"`
	HostCalls float64 `json:"host_calls"`
}

// wasmTotals are the summed counters of every Wasm plugin on /plugins.
type wasmTotals struct {
	calls, acquire, call, host, hostCalls float64
}

// wasmTimes reads /plugins from a wasmgate admin address; nil when there
// is no admin or no Wasm plugin.
func wasmTimes(admin string) *wasmTotals {
	if admin == "" {
		return nil
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/plugins")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ps []struct {
		Kind      string  `json:"kind"`
		Calls     float64 `json:"calls"`
		AcquireNs float64 `json:"acquire_ns_total"`
		CallNs    float64 `json:"call_ns_total"`
		HostNs    float64 `json:"host_ns_total"`
		HostCalls float64 `json:"host_calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		return nil
	}
	t := &wasmTotals{}
	n := 0
	for _, p := range ps {
		if p.Kind != "wasm" {
			continue
		}
		n++
		t.calls += p.Calls
		t.acquire += p.AcquireNs
		t.call += p.CallNs
		t.host += p.HostNs
		t.hostCalls += p.HostCalls
	}
	if n == 0 {
		return nil
	}
	return t
}

// perRequest is the difference to an earlier reading, per request.
func (t *wasmTotals) perRequest(before *wasmTotals, requests uint64) *WasmSplit {
	n := float64(requests)
	host := (t.host - before.host) / n
	return &WasmSplit{
		Calls:     (t.calls - before.calls) / n,
		AcquireUs: (t.acquire - before.acquire) / n / 1e3,
		GuestUs:   ((t.call-before.call)/n - host) / 1e3,
		HostUs:    host / 1e3,
		HostCalls: (t.hostCalls - before.hostCalls) / n,
	}
}
