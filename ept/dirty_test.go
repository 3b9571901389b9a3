package ept

import (
	"math/rand/v2"
	"testing"
)

// writeRandom writes n random pages of the guest through cpu and returns
// the set of their frames.
func writeRandom(t testing.TB, cpu *SimCPU, rng *rand.Rand, frames uint64, n int) *Bitmap {
	want := NewBitmap(frames)
	for range n {
		gfn := rng.Uint64N(frames)
		if _, err := cpu.Access(gfn*PageSize+rng.Uint64N(PageSize), true); err != nil {
			t.Fatalf("write to frame %#x faulted", gfn)
		}
		want.Set(gfn)
		// Reads elsewhere set accessed flags but must not be reported.
		cpu.Access(rng.Uint64N(frames)*PageSize, false)
	}
	return want
}

func sameSet(t *testing.T, what string, got, want *Bitmap) {
	t.Helper()
	if miss := want.AndNot(got); miss.Count() != 0 {
		t.Errorf("%s: missed %d frames, first %#x", what, miss.Count(), miss.Slice()[0])
	}
	if extra := got.AndNot(want); extra.Count() != 0 {
		t.Errorf("%s: %d extra frames, first %#x", what, extra.Count(), extra.Slice()[0])
	}
}

func TestHarvestExact(t *testing.T) {
	const ramSize = 64 << 20
	const frames = ramSize / PageSize
	for _, pml := range []bool{false, true} {
		g := newTestGuest(t, ramSize, MapOpt{})
		cpu := &SimCPU{T: g.t, PML: pml, Index: PMLIndexStart}
		src := DirtySource(ScanSource{g.t})
		fullExits := 0
		if pml {
			ps := NewPMLSource(g.t, &cpu.Log, cpu, frames)
			cpu.PMLFull = func() {
				fullExits++
				if _, err := ps.Drain(); err != nil {
					t.Fatal(err)
				}
			}
			src = ps
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for round, n := range []int{0, 1, 7, 511, 512, 513, 3000, 20000} {
			want := writeRandom(t, cpu, rng, frames, n)
			got := NewBitmap(frames)
			if err := src.Harvest(got); err != nil {
				t.Fatal(err)
			}
			sameSet(t, "pml="+map[bool]string{false: "off", true: "on"}[pml]+" round", got, want)
			_ = round
		}
		// Nothing written since: an empty harvest.
		got := NewBitmap(frames)
		if err := src.Harvest(got); err != nil || got.Count() != 0 {
			t.Errorf("pml=%v: idle harvest found %d frames, %v", pml, got.Count(), err)
		}
		if pml && fullExits == 0 {
			t.Error("no PML-full exit with 20000 writes")
		}
	}
}

func TestHarvestLargeLeafReportsWholePage(t *testing.T) {
	g := newTestGuest(t, 4*LargeSize, MapOpt{Large: true})
	cpu := NewSimCPU(g.t)
	cpu.Access(LargeSize+0x3000, true)
	got := NewBitmap(4 * LargeSize / PageSize)
	if err := g.t.HarvestScan(got); err != nil {
		t.Fatal(err)
	}
	want := NewBitmap(got.Frames())
	want.SetRange(LargeSize/PageSize, 512)
	sameSet(t, "2M leaf", got, want)
}

func TestHarvestNeedsAD(t *testing.T) {
	r, _ := NewHostRegion(0, 4*PageSize)
	tb, _ := New(r, nil, Options{})
	if err := tb.HarvestScan(NewBitmap(1)); err != ErrNoAD {
		t.Errorf("harvest without A/D: %v, want ErrNoAD", err)
	}
}

// TestHarvestSkipsUntouched checks that a scan's cost follows the touched
// memory: after one harvest cleared the upper accessed flags, a harvest
// reads one PT (512 entries) per touched 2 MiB region on top of a fixed
// cost of the upper levels.
func TestHarvestSkipsUntouched(t *testing.T) {
	const ramSize = 1 << 30
	g := newTestGuest(t, ramSize, MapOpt{})
	cpu := NewSimCPU(g.t)
	b := NewBitmap(ramSize / PageSize)
	// First harvest: every A flag is clear already (nothing ran), so it
	// walks only PML4 and PDPT entries plus the 512 PDEs.
	if err := g.t.HarvestScan(b); err != nil {
		t.Fatal(err)
	}
	// The PML4 (512) entries, then nothing under the never-used tables.
	const fixed = 512
	for _, regions := range []int{0, 1, 10, 100} {
		for i := range regions {
			// Two writes in each of `regions` distinct 2M regions.
			gpa := uint64(i) * 5 * LargeSize % ramSize
			cpu.Access(gpa, true)
			cpu.Access(gpa+PageSize*100, true)
		}
		before := g.t.Visited()
		b.Reset()
		if err := g.t.HarvestScan(b); err != nil {
			t.Fatal(err)
		}
		cost := g.t.Visited() - before
		limit := uint64(fixed)
		if regions > 0 {
			limit += 512 + 512 + uint64(regions)*512 // PDPT, PD, PTs
		}
		if cost > limit || b.Count() != 2*regions {
			t.Errorf("%d touched regions: read %d entries (limit %d), %d dirty", regions, cost, limit, b.Count())
		}
		t.Logf("%d touched 2M regions of a 1 GiB guest: harvest read %d entries", regions, cost)
	}
}

func TestDrainPMLIndex(t *testing.T) {
	g := newTestGuest(t, LargeSize, MapOpt{})
	var log [PMLEntries]uint64
	for i := range log {
		log[i] = uint64(i%PMLEntries) * PageSize % LargeSize
	}
	for _, c := range []struct {
		index uint16
		want  int
	}{
		{511, 0},      // nothing logged since reset
		{509, 2},      // entries 510 and 511
		{0, 511},      // entries 1..511
		{0xFFFF, 512}, // wrapped: the log is full
	} {
		b := NewBitmap(LargeSize / PageSize)
		n, err := g.t.DrainPML(&log, c.index, b)
		if err != nil || n != c.want || b.Count() != c.want {
			t.Errorf("index %d: consumed %d, %d frames, %v; want %d", c.index, n, b.Count(), err, c.want)
		}
	}
}

func TestBitmap(t *testing.T) {
	b := NewBitmap(200)
	for _, f := range []uint64{0, 63, 64, 199} {
		if !b.Set(f) {
			t.Errorf("Set(%d) refused", f)
		}
	}
	if b.Set(200) {
		t.Error("Set(200) of a 200-frame set accepted")
	}
	b.SetRange(120, 100) // clipped to 199
	if got := b.Count(); got != 3+80 {
		t.Errorf("Count %d, want 83", got)
	}
	b.Clear(63)
	if b.Test(63) || !b.Test(64) || !b.Test(150) {
		t.Error("Test/Clear")
	}
	s := b.Slice()
	if s[0] != 0 || s[1] != 64 || s[2] != 120 || s[len(s)-1] != 199 {
		t.Errorf("Slice %v", s[:4])
	}
}
