package debugexit

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		size  int
		value uint32
		want  uint64
	}{
		{1, 0, 1},
		{1, 0x10, 0x21}, // the usual "success" of test kernels: 33
		{2, 0x1234, 0x2469},
		{4, 0xFFFFFFFF, 0x1FFFFFFFF},
	} {
		var got []uint64
		d := New(func(s uint64) { got = append(got, s) })
		d.PortOut(0, tc.size, tc.value)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("write %#x (size %d): exits %v, want [%#x]", tc.value, tc.size, got, tc.want)
		}
	}
	d := New(func(uint64) { t.Error("a read exited") })
	if v := d.PortIn(0, 4); v != 0xFFFFFFFF {
		t.Errorf("read %#x", v)
	}
}

type subject struct {
	*Device
	exits *[]uint64
}

func (s subject) Do(op devtest.Op) uint64 {
	if op.Kind == 0 {
		return uint64(s.PortIn(op.Offset, op.Size))
	}
	s.PortOut(op.Offset, op.Size, op.Value)
	return 0
}

func (s subject) Observe() string {
	o := fmt.Sprint(*s.exits)
	*s.exits = (*s.exits)[:0]
	return o
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		devtest.SaveRestore(t, seed, 500, func(*devtest.Clock) devtest.Subject {
			var exits []uint64
			return subject{New(func(s uint64) { exits = append(exits, s) }), &exits}
		}, func(r *rand.Rand) devtest.Op {
			return devtest.Op{Kind: r.Intn(2), Offset: uint16(r.Intn(Size)), Size: 1 << r.Intn(3), Value: r.Uint32()}
		})
	}
}

func FuzzRestore(f *testing.F) {
	blob, _ := New(nil).Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		devtest.Restore(t, New(nil), b)
	})
}
