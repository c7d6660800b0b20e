package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits linear sub-buckets per
// power of two, so a recorded value is off by less than 1/64 (1.6%).
const subBits = 6

const (
	subCount  = 1 << subBits
	histSlots = 64 * subCount
)

// Hist is a log-linear latency histogram in nanoseconds (the HdrHistogram
// layout with a fixed precision): exact below 64 ns, then 64 buckets per
// power of two. It is not safe for concurrent use; merge per-worker ones.
type Hist struct {
	counts [histSlots]uint64
	n      uint64
	sum    float64
	max    int64
}

func slot(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	msb := bits.Len64(uint64(v)) - 1
	shift := msb - subBits
	sub := int(v >> uint(shift)) // in [subCount, 2*subCount)
	return (shift+1)*subCount + sub - subCount
}

// lowest returns the smallest value that falls in slot i.
func lowest(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	sub := int64(i%subCount + subCount)
	return sub << uint(shift)
}

// width returns the range of values of slot i.
func width(i int) int64 {
	if i < subCount {
		return 1
	}
	return 1 << uint(i/subCount-1)
}

// Record adds one value.
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	h.counts[slot(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count returns the number of values.
func (h *Hist) Count() uint64 { return h.n }

// Mean returns the mean value.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest value recorded.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value at quantile q (0..1): the midpoint of the
// bucket holding the ceil(q*n)-th value, capped at the maximum.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := lowest(i) + width(i)/2
			return time.Duration(min(v, h.max))
		}
	}
	return time.Duration(h.max)
}
