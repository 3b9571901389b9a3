package ftmirror

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestStatsBounded records a long run's worth of samples: the statistics
// must not grow with it (a few kilobytes, not a slice per sample).
func TestStatsBounded(t *testing.T) {
	var s Stats
	record := func(n int) {
		for i := 0; i < n; i++ {
			d := time.Duration(i%5000) * time.Microsecond
			s.checkpoint(time.Unix(0, int64(i)*int64(time.Millisecond)), d, 1000, 2000)
			s.pauseParts(d, d, d, d)
			s.ack(d)
			s.released(time.Unix(1, 0), []emitMark{{at: time.Unix(0, 0)}})
		}
	}
	record(1000)
	small := statsBytes(reflect.ValueOf(&s).Elem())
	record(500_000)
	if big := statsBytes(reflect.ValueOf(&s).Elem()); big != small || big > 256<<10 {
		t.Fatalf("statistics hold %d bytes after 1,000 checkpoints, %d after 501,000; want a fixed size", small, big)
	}
	if sum := s.Summary(); sum.Checkpoints != 501_000 {
		t.Fatalf("counted %d checkpoints", sum.Checkpoints)
	}
}

// TestHistogramPercentiles compares the histogram's p50/p99/max with the
// exact values from sorting.
func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-30ms", func() time.Duration { return time.Duration(rng.Int64N(int64(30 * time.Millisecond))) }},
		{"exponential 100us", func() time.Duration { return time.Duration(rng.ExpFloat64() * 100e3) }},
		{"tiny", func() time.Duration { return time.Duration(rng.IntN(40)) }},
		{"heavy tail", func() time.Duration { return time.Duration(math.Exp(rng.Float64()*20) * 1e3) }},
	} {
		var h histogram
		var all []time.Duration
		for i := 0; i < 20000; i++ {
			d := dist.gen()
			h.add(d)
			all = append(all, d)
		}
		slices.Sort(all)
		for _, q := range []float64{0.5, 0.99, 1} {
			want := all[min(len(all)-1, int(q*float64(len(all))))]
			got := h.quantile(q)
			if got < want || float64(got-want) > float64(want)/histSub+1 {
				t.Errorf("%s: q%.2f = %v, exact %v", dist.name, q, got, want)
			}
		}
		if h.max != all[len(all)-1] {
			t.Errorf("%s: max %v, want %v", dist.name, h.max, all[len(all)-1])
		}
	}
}

func TestBucketBounds(t *testing.T) {
	prev := -1
	for d := time.Duration(0); d < time.Hour; d = d*9/8 + 1 {
		b := bucket(d)
		if b < prev || bucketHigh(b) < d || (b > 0 && bucketHigh(b-1) >= d) {
			t.Fatalf("bucket(%d) = %d, high %d, previous high %d", d, b, bucketHigh(b), bucketHigh(b-1))
		}
		prev = b
	}
}

// statsBytes is the memory v holds: its own size plus every slice's
// backing array, recursively.
func statsBytes(v reflect.Value) int {
	n := 0
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			n += statsBytes(v.Field(i))
		}
		return n
	case reflect.Array:
		if v.Len() > 0 && v.Index(0).Kind() != reflect.Struct {
			return int(v.Type().Size())
		}
		for i := 0; i < v.Len(); i++ {
			n += statsBytes(v.Index(i))
		}
		return n
	case reflect.Slice:
		n = int(v.Type().Size()) + v.Cap()*int(v.Type().Elem().Size())
		return n
	}
	return int(v.Type().Size())
}
