package main

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestHistSlots(t *testing.T) {
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 123456, 1 << 40} {
		i := slot(v)
		if lo, w := lowest(i), width(i); v < lo || v >= lo+w {
			t.Errorf("value %d in slot %d = [%d, %d)", v, i, lo, lo+w)
		}
	}
}

func TestHistQuantilesWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Hist
	vals := make([]int64, 100000)
	for i := range vals {
		// Log-normal-ish latencies from 10µs to ~100ms.
		vals[i] = int64(10_000 * (1 + r.ExpFloat64()*r.ExpFloat64()*50))
		h.Record(time.Duration(vals[i]))
	}
	sort.Slice(vals, func(a, b int) bool { return vals[a] < vals[b] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.Quantile(q))
		if d := float64(got-want) / float64(want); d > 0.02 || d < -0.02 {
			t.Errorf("q%v = %d, want %d (±2%%)", q, got, want)
		}
	}
	if h.Count() != uint64(len(vals)) || h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
	var m Hist
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d p50 %v vs %v", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
	var empty Hist
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram not zero")
	}
}

func TestNiceSteps(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []float64
	}{
		{700e3, 7e6, []float64{500e3, 1e6, 2e6, 5e6, 10e6}},
		{1e6, 1.5e6, []float64{1e6, 2e6}},
		{220e3, 300e3, []float64{200e3, 500e3}},
		{90e3, 110e3, []float64{50e3, 100e3, 200e3}},
	}
	for _, tc := range tests {
		got := niceSteps(tc.lo, tc.hi)
		if len(got) != len(tc.want) {
			t.Errorf("niceSteps(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
			continue
		}
		for i := range got {
			if d := got[i] - tc.want[i]; d > 1e-6*tc.want[i] || d < -1e-6*tc.want[i] {
				t.Errorf("niceSteps(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
				break
			}
		}
	}
}
