package ept

import "testing"

// The drain's page-table index must follow the tables through Unmap, Map
// and Protect: 4 KiB pages take the index, a 2 MiB leaf marks its whole
// range, unmapped addresses mark only their frame, and every dirty flag a
// logged address stands for is cleared.
func TestDrainPMLIndexFollowsTables(t *testing.T) {
	const ram = 4 * LargeSize
	g := newTestGuest(t, ram, MapOpt{})
	cpu := NewSimCPU(g.t)
	frames := uint64(ram / PageSize)
	drain := func(gpas ...uint64) *Bitmap {
		t.Helper()
		var log [PMLEntries]uint64
		copy(log[PMLEntries-len(gpas):], gpas)
		for _, gpa := range gpas {
			if gpa < ram {
				cpu.Access(gpa, true)
			}
		}
		b := NewBitmap(frames)
		if _, err := g.t.DrainPML(&log, uint16(PMLEntries-len(gpas)-1), b); err != nil {
			t.Fatal(err)
		}
		left := NewBitmap(frames)
		if err := g.t.HarvestScan(left); err != nil {
			t.Fatal(err)
		}
		if left.Count() != 0 {
			t.Errorf("dirty flags left after the drain: %v", left.Slice())
		}
		return b
	}
	check := func(name string, b *Bitmap, want ...[2]uint64) {
		t.Helper()
		w := NewBitmap(frames)
		for _, r := range want {
			w.SetRange(r[0], r[1])
		}
		if got, wantS := b.Slice(), w.Slice(); len(got) != len(wantS) || b.AndNot(w).Count() != 0 {
			t.Errorf("%s: drained %d frames %v..., want %d", name, len(got), got[:min(len(got), 8)], len(wantS))
		}
	}
	// All 4 KiB: the index is built here.
	check("4K pages", drain(0x1234, LargeSize+0x5000, 3*LargeSize+0x7FFC),
		[2]uint64{1, 1}, [2]uint64{512 + 5, 1}, [2]uint64{3*512 + 7, 1})
	// Slot 1 unmapped (its page table freed), then mapped as one 2 MiB leaf.
	if err := g.t.Unmap(LargeSize, LargeSize); err != nil {
		t.Fatal(err)
	}
	check("unmapped", drain(LargeSize+0x3000), [2]uint64{512 + 3, 1})
	if err := g.t.Map(LargeSize, LargeSize, g.ram+LargeSize, PermRWX, MapOpt{Large: true}); err != nil {
		t.Fatal(err)
	}
	check("2M leaf", drain(LargeSize+0x9000, 2*LargeSize+0x1000), [2]uint64{512, 512}, [2]uint64{2*512 + 1, 1})
	// Protect splits nothing here but must not leave a stale index.
	if err := g.t.Protect(2*LargeSize, LargeSize, PermRW); err != nil {
		t.Fatal(err)
	}
	check("protected", drain(2*LargeSize+0x2000, ram+0x1000), [2]uint64{2*512 + 2, 1})
}

// Every change of structure drops the index (a freed page table may come
// back as another slot's table).
func TestPTIndexDropped(t *testing.T) {
	g := newTestGuest(t, 2*LargeSize, MapOpt{})
	for _, c := range []struct {
		name string
		op   func() error
	}{
		{"unmap", func() error { return g.t.Unmap(0, PageSize) }},
		{"map", func() error { return g.t.Map(0, PageSize, g.ram, PermRWX, MapOpt{}) }},
		{"protect", func() error { return g.t.Protect(0, LargeSize, PermRW) }},
	} {
		g.t.buildPTIndex()
		if len(g.t.ptIndex) != 2 || g.t.ptIndex[0] == nil || g.t.ptIndex[1] == nil {
			t.Fatalf("index of a 4 MiB guest in 4K pages: %d slots", len(g.t.ptIndex))
		}
		if err := c.op(); err != nil {
			t.Fatal(err)
		}
		if g.t.ptIndexOK {
			t.Errorf("%s kept the page-table index", c.name)
		}
	}
}

// The indexed drain gives what a walk per logged address gives (the
// drain before the index), on random logs over 4 KiB pages, a 2 MiB leaf,
// holes and addresses beyond the guest.
func TestDrainIndexedMatchesWalk(t *testing.T) {
	const ram = 8 * LargeSize
	build := func() (*testGuest, *SimCPU) {
		g := newTestGuest(t, ram, MapOpt{})
		for _, gpa := range []uint64{0x3000, LargeSize + 0x7000, 5*LargeSize + 0x1FF000} {
			if err := g.t.Unmap(gpa, PageSize); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.t.Unmap(6*LargeSize, LargeSize); err != nil {
			t.Fatal(err)
		}
		if err := g.t.Map(6*LargeSize, LargeSize, g.ram+6*LargeSize, PermRWX, MapOpt{Large: true}); err != nil {
			t.Fatal(err)
		}
		return g, NewSimCPU(g.t)
	}
	fast, fastCPU := build()
	slow, slowCPU := build()
	frames := uint64(ram / PageSize)
	rng := uint64(0x9E3779B97F4A7C15)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	for round := range 20 {
		var log [PMLEntries]uint64
		for i := range log {
			gpa := next() % (ram + ram/8) // some beyond the guest
			if round%4 == 0 {
				gpa = 6*LargeSize + next()%LargeSize // the large leaf
			}
			log[i] = gpa
			for _, c := range []*SimCPU{fastCPU, slowCPU} {
				_, _ = c.Access(gpa&^(PageSize-1), true) // unmapped ones fail alike
			}
		}
		got, want := NewBitmap(frames), NewBitmap(frames)
		if _, err := fast.t.DrainPML(&log, 0xFFFF, got); err != nil {
			t.Fatal(err)
		}
		for _, gpa := range log {
			slow.t.clearDirty(gpa&^(PageSize-1), want)
		}
		if got.AndNot(want).Count() != 0 || want.AndNot(got).Count() != 0 {
			t.Fatalf("round %d: indexed drain %d frames, walk %d", round, got.Count(), want.Count())
		}
		leftFast, leftSlow := NewBitmap(frames), NewBitmap(frames)
		if err := fast.t.HarvestScan(leftFast); err != nil {
			t.Fatal(err)
		}
		if err := slow.t.HarvestScan(leftSlow); err != nil {
			t.Fatal(err)
		}
		if leftFast.Count() != leftSlow.Count() {
			t.Fatalf("round %d: dirty flags left: indexed %d, walk %d", round, leftFast.Count(), leftSlow.Count())
		}
	}
}
