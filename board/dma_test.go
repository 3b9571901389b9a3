package board

import "testing"

func TestSplitReserved(t *testing.T) {
	m := MemoryMap{
		{0, 0x9f000, RegionUsable},
		{0x100000, 0x8000000, RegionUsable},
		{0x4000000, 0x8000000, RegionDoppelReserved},
	}
	tests := []struct {
		dma              uint64
		guestEnd, dmaLen uint64
		fail             bool
	}{
		{0, 0x8000000, 0, false},
		{4 << 20, 0x8000000 - 4<<20, 4 << 20, false},
		{1, 0x8000000 - 2<<20, 2 << 20, false}, // rounded up to 2 MiB
		{64 << 20, 0, 0, true},                 // nothing left for the guest
	}
	for _, tc := range tests {
		g, d, err := SplitReserved(m, tc.dma)
		if (err != nil) != tc.fail {
			t.Errorf("dma %#x: err %v, want failure %v", tc.dma, err, tc.fail)
			continue
		}
		if tc.fail {
			continue
		}
		if g.Start != 0x4000000 || g.End != tc.guestEnd || d.Start != g.End || d.Size() != tc.dmaLen || d.End != 0x8000000 {
			t.Errorf("dma %#x: guest %v dma %v", tc.dma, g, d)
		}
	}
	if _, _, err := SplitReserved(m[:2], 0); err == nil {
		t.Error("no reserved region: no error")
	}
}
