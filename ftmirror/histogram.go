package ftmirror

import (
	"math/bits"
	"time"
)

// histogram counts durations in fixed log-linear buckets, so that a run of
// any length keeps the same few kilobytes of statistics: each power of two
// is split into histSub buckets, so a percentile read back is within
// 1/histSub (about 3%) of the true value; the maximum is kept exactly.
type histogram struct {
	counts [64 * histSub]uint32
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
)

// bucket returns the bucket of d (≥ 0): values below histSub ns have
// their own buckets; above, the top histSubBits+1 bits select one.
func bucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // shift that leaves histSub..2*histSub-1
	return (e+1)*histSub + int(v>>e) - histSub
}

// bucketHigh is the largest value that falls in bucket b.
func bucketHigh(b int) time.Duration {
	if b < histSub {
		return time.Duration(b)
	}
	e := b/histSub - 1
	m := uint64(b%histSub + histSub)
	return time.Duration((m+1)<<e - 1)
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucket(d)]++
	h.n++
	h.max = max(h.max, d)
}

// quantile returns the q-quantile (0 < q ≤ 1) as the upper bound of its
// bucket, but never more than the maximum seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n)) // as the sorted-slice version did: index ⌊q·n⌋
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for b, c := range h.counts {
		seen += uint64(c)
		if seen > rank {
			return min(bucketHigh(b), h.max)
		}
	}
	return h.max
}

// pct returns p50, p99 and max in milliseconds.
func (h *histogram) pct() (p50, p99, mx float64) {
	ms := func(x time.Duration) float64 { return float64(x) / 1e6 }
	return ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.max)
}
