package ftmirror

import (
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// recSink records the offsets and sizes of each Release.
type recSink struct{ offs, ns []uint64 }

func (r *recSink) Release(off uint64, b []byte) error {
	r.offs, r.ns = append(r.offs, off), append(r.ns, uint64(len(b)))
	return nil
}

// TestWholeReleases: with WholeReleases each sealed output goes to the
// sink in one piece (a record-parsing sink never sees a release end inside
// an Output call); without it the first is split for PointMidRelease.
func TestWholeReleases(t *testing.T) {
	for _, c := range []struct {
		whole bool
		want  []uint64 // release sizes
	}{
		{true, []uint64{10, 6}},
		{false, []uint64{5, 5, 6}},
	} {
		g := simguest.NewBlank(simguest.Params{Pages: 4})
		sink := &recSink{}
		p := NewPrimary(Config{WholeReleases: c.whole, Epoch: time.Millisecond}, g, g, g, sink)
		p.Output(make([]byte, 4))
		p.Output(make([]byte, 6))
		p.out.seal(1)
		p.Output(make([]byte, 6))
		p.out.seal(2)
		mid := 0
		p.release(2, time.Time{}, nil, func() { mid++ })
		if len(sink.ns) != len(c.want) {
			t.Fatalf("whole=%v: releases of %v bytes, want %v", c.whole, sink.ns, c.want)
		}
		for i := range c.want {
			if sink.ns[i] != c.want[i] {
				t.Fatalf("whole=%v: releases of %v bytes, want %v", c.whole, sink.ns, c.want)
			}
		}
		if wantMid := map[bool]int{true: 0, false: 1}[c.whole]; mid != wantMid {
			t.Errorf("whole=%v: PointMidRelease %d times, want %d", c.whole, mid, wantMid)
		}
		if got := p.out.releasedThrough(); got != 16 {
			t.Errorf("whole=%v: released through %d, want 16", c.whole, got)
		}
	}
}
