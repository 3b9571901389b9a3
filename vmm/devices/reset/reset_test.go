package reset

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

func TestResets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []uint8
		want   []Kind
		reg    uint32
	}{
		{"linux reboot=pci: 0x02 then 0x06", []uint8{0x02, 0x06}, []Kind{Hard}, 0},
		{"full reset 0x0E", []uint8{0x0E}, []Kind{Full}, 0},
		{"soft reset 0x04", []uint8{0x04}, []Kind{Soft}, 0},
		{"select only", []uint8{0x0A}, nil, 0x0A},
		{"reserved bits dropped", []uint8{0xF3}, nil, 0x02},
		{"twice", []uint8{0x06, 0x06}, []Kind{Hard, Hard}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []Kind
			c := New(func(k Kind) { got = append(got, k) })
			for _, w := range tc.writes {
				c.PortOut(0, 1, uint32(w))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("resets %v, want %v", got, tc.want)
			}
			if r := c.PortIn(0, 1); r != tc.reg {
				t.Errorf("register %#x, want %#x", r, tc.reg)
			}
		})
	}
}

type subject struct {
	*Control
	resets *[]Kind
}

func (s subject) Do(op devtest.Op) uint64 {
	if op.Kind == 0 {
		return uint64(s.PortIn(0, 1))
	}
	s.PortOut(0, 1, op.Value)
	return 0
}

func (s subject) Observe() string {
	o := fmt.Sprint(*s.resets)
	*s.resets = (*s.resets)[:0]
	return o
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		devtest.SaveRestore(t, seed, 500, func(*devtest.Clock) devtest.Subject {
			var resets []Kind
			return subject{New(func(k Kind) { resets = append(resets, k) }), &resets}
		}, func(r *rand.Rand) devtest.Op {
			v := uint32(r.Intn(16))
			if r.Intn(3) != 0 {
				v &^= RstCPU
			}
			return devtest.Op{Kind: r.Intn(2), Value: v}
		})
	}
}

func FuzzRestore(f *testing.F) {
	c := New(nil)
	c.PortOut(0, 1, 0x0A)
	blob, _ := c.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		devtest.Restore(t, New(nil), b)
	})
}
