package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in microseconds: exact below 64 µs, then 32 buckets
// per power of two (at most 1/32, about 3 %, above the true value). It covers up to 2^36 µs
// (19 hours); larger values count in the last bucket.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64 // µs
}

const (
	histSub     = 6 // 2^6 linear buckets, then 2^5 per power of two
	histBuckets = (36-histSub+1)<<(histSub-1) + 1<<(histSub-1)
)

func histIndex(us int64) int {
	if us < 1<<histSub {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	shift := bits.Len64(uint64(us)) - histSub
	i := shift<<(histSub-1) + int(us>>shift)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the largest value that counts in bucket i.
func histUpper(i int) int64 {
	if i < 1<<histSub {
		return int64(i)
	}
	shift := i>>(histSub-1) - 1
	top := int64(i - shift<<(histSub-1))
	return (top+1)<<shift - 1
}

func (h *hist) add(d time.Duration) {
	us := d.Microseconds()
	h.counts[histIndex(us)]++
	h.n++
	if us > h.max {
		h.max = us
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1) in milliseconds: the upper end of the bucket
// holding the ceil(q·n)-th value, never above the largest value seen. 0 when empty.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return float64(min(histUpper(i), h.max)) / 1000
		}
	}
	return float64(h.max) / 1000
}
