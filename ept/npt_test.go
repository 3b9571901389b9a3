package ept

import (
	"math/rand/v2"
	"testing"
)

// newNPTGuest is newTestGuest with nested page tables.
func newNPTGuest(tb testing.TB, ramSize uint64, o MapOpt) *testGuest {
	tb.Helper()
	r, err := NewHostRegion(testRegionBase, ramSize+ramSize/256+16*PageSize+LargeSize)
	if err != nil {
		tb.Fatal(err)
	}
	inv := &countInv{}
	t, err := New(r, inv, Options{Nested: true})
	if err != nil {
		tb.Fatal(err)
	}
	ram, err := r.AllocGuestRAM(ramSize, LargeSize)
	if err != nil {
		tb.Fatal(err)
	}
	if err := t.Map(0, ramSize, ram, PermRWX, o); err != nil {
		tb.Fatal(err)
	}
	return &testGuest{r: r, t: t, inv: inv, ram: ram}
}

func TestNPTEntryBits(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		// AMD APM Vol. 2, 5.4.1, figures 5-18 to 5-23.
		{"P bit 0", NPTPresent, 1 << 0},
		{"R/W bit 1", NPTWrite, 1 << 1},
		{"U/S bit 2", NPTUser, 1 << 2},
		{"A bit 5", NPTAccessed, 1 << 5},
		{"D bit 6", NPTDirty, 1 << 6},
		{"PS bit 7", NPTPageSize, 1 << 7},
		{"NX bit 63", NPTNoExecute, 1 << 63},
		{"4K leaf rwx", formatNPT.leaf(0x1234000, PermRWX, levelPT), 0x1234000 | 7},
		{"4K leaf rw (NX)", formatNPT.leaf(0x1234000, PermRW, levelPT), 0x1234000 | 7 | 1<<63},
		{"4K leaf rx (read-only)", formatNPT.leaf(0x1234000, PermRX, levelPT), 0x1234000 | 5},
		{"2M leaf rwx", formatNPT.leaf(0x4000_0000, PermRWX, levelPD), 0x4000_0000 | 7 | 0x80},
		{"table entry P|RW|US", formatNPT.table(0x5000), 0x5000 | 7},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestNPTPermRoundTrip(t *testing.T) {
	for _, p := range []Perm{PermNone, Read, PermRW, PermRX, PermRWX} {
		e := formatNPT.leaf(0x7000, p, levelPT)
		if got := formatNPT.perm(e); got != p {
			t.Errorf("perm %v: leaf %#x reads back as %v", p, e, got)
		}
		if got := formatNPT.perm(formatNPT.withPerm(formatNPT.leaf(0x7000, PermRWX, levelPT)|NPTDirty, p)); got != p {
			t.Errorf("withPerm %v: reads back %v", p, got)
		}
	}
	for _, p := range []Perm{Write, Execute, Write | Execute} {
		if formatNPT.validPerm(p) == nil {
			t.Errorf("NPT accepted permission %v it cannot express", p)
		}
	}
}

func TestNPTMapLookupProtect(t *testing.T) {
	g := newNPTGuest(t, 8*LargeSize, MapOpt{Large: true})
	if g.t.NCR3() != g.t.root || g.t.EPTP() != g.t.root || !g.t.Nested() {
		t.Fatalf("NCR3 %#x EPTP %#x root %#x", g.t.NCR3(), g.t.EPTP(), g.t.root)
	}
	m, ok := g.t.Lookup(3*LargeSize + 0x5123)
	if !ok || m.Size != LargeSize || m.HPA != g.ram+3*LargeSize || m.Perm != PermRWX || m.Entry&NPTPageSize == 0 {
		t.Fatalf("lookup in a 2M leaf: %+v %v", m, ok)
	}
	// Protect one 4K page read-only: the 2M leaf splits, the rest keeps RWX.
	if err := g.t.Protect(3*LargeSize+0x5000, PageSize, PermRX); err != nil {
		t.Fatal(err)
	}
	cpu := NewSimCPU(g.t)
	if _, err := cpu.Access(3*LargeSize+0x5008, true); err == nil {
		t.Error("write to a read-only nested page did not fault")
	}
	if _, err := cpu.Access(3*LargeSize+0x6008, true); err != nil {
		t.Errorf("write beside it faulted: %v", err)
	}
	m, _ = g.t.Lookup(3*LargeSize + 0x6000)
	if m.Size != PageSize || m.Entry&NPTUser == 0 || m.Entry&NPTPageSize != 0 {
		t.Errorf("split leaf %+v: want a 4K leaf with U/S and no PS", m)
	}
	if err := g.t.Unmap(0, LargeSize); err != nil {
		t.Fatal(err)
	}
	if _, err := cpu.Access(0x1000, false); err == nil {
		t.Error("read of an unmapped nested page did not fault")
	}
	if _, err := g.t.DrainPML(&[PMLEntries]uint64{}, 0, NewBitmap(1)); err == nil {
		t.Error("DrainPML on nested tables succeeded; NPT has no PML")
	}
}

// TestNPTHarvestExact is TestHarvestExact for nested tables: every written
// frame and only those, round after round, with reads in between.
func TestNPTHarvestExact(t *testing.T) {
	const ramSize = 64 << 20
	const frames = ramSize / PageSize
	g := newNPTGuest(t, ramSize, MapOpt{})
	cpu := NewSimCPU(g.t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 511, 512, 513, 3000, 20000} {
		want := writeRandom(t, cpu, rng, frames, n)
		got := NewBitmap(frames)
		inv := g.inv.n
		if err := (ScanSource{g.t}).Harvest(got); err != nil {
			t.Fatal(err)
		}
		sameSet(t, "npt round", got, want)
		if g.inv.n != inv+1 || g.inv.eptp != g.t.NCR3() {
			t.Errorf("harvest invalidated %d times with %#x, want once with NCR3 %#x", g.inv.n-inv, g.inv.eptp, g.t.NCR3())
		}
	}
	got := NewBitmap(frames)
	if err := g.t.HarvestScan(got); err != nil || got.Count() != 0 {
		t.Errorf("idle harvest found %d frames, %v", got.Count(), err)
	}
}

// TestNPTHarvestSkipsUntouched: the scan's cost follows the touched
// memory with NPT's A bits as with EPT's.
func TestNPTHarvestSkipsUntouched(t *testing.T) {
	const ramSize = 1 << 30
	g := newNPTGuest(t, ramSize, MapOpt{})
	cpu := NewSimCPU(g.t)
	b := NewBitmap(ramSize / PageSize)
	if err := g.t.HarvestScan(b); err != nil {
		t.Fatal(err)
	}
	for _, regions := range []int{0, 1, 10, 100} {
		for i := range regions {
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
		limit := uint64(512)
		if regions > 0 {
			limit += 512 + 512 + uint64(regions)*512
		}
		if cost > limit || b.Count() != 2*regions {
			t.Errorf("%d touched regions: read %d entries (limit %d), %d dirty", regions, cost, limit, b.Count())
		}
	}
}

func TestNPTHarvestLargeLeaf(t *testing.T) {
	g := newNPTGuest(t, 4*LargeSize, MapOpt{Large: true})
	cpu := NewSimCPU(g.t)
	cpu.Access(2*LargeSize+0x3000, true)
	got := NewBitmap(4 * LargeSize / PageSize)
	if err := g.t.HarvestScan(got); err != nil {
		t.Fatal(err)
	}
	want := NewBitmap(got.Frames())
	want.SetRange(2*LargeSize/PageSize, 512)
	sameSet(t, "2M nested leaf", got, want)
}

// TestCheckConfined: tables built by Map reach only the guest's RAM, and
// each kind of stray entry that would let the guest write host memory is
// found: a 4 KiB leaf or a 2 MiB leaf whose frame lies outside, a leaf past
// the guest's size, and a table frame inside guest RAM.
func TestCheckConfined(t *testing.T) {
	const ramSize = 8 << 20
	for _, c := range []struct {
		name    string
		large   bool
		corrupt func(g *testGuest) // nil: the tables as built
		wantErr bool
	}{
		{name: "4K leaves as built"},
		{name: "2M leaves as built", large: true},
		{name: "4K leaf below guest RAM", corrupt: func(g *testGuest) {
			e, _ := g.t.leaf(0x3000)
			*e = *e&^AddrMask | (g.ram - PageSize)
		}, wantErr: true},
		{name: "4K leaf on the last page past the end", corrupt: func(g *testGuest) {
			e, _ := g.t.leaf(ramSize - PageSize)
			*e = *e&^AddrMask | (g.ram + ramSize)
		}, wantErr: true},
		{name: "2M leaf with a frame outside", large: true, corrupt: func(g *testGuest) {
			e, level := g.t.leaf(LargeSize)
			if level != levelPD {
				panic("not a 2 MiB leaf")
			}
			*e = *e&^AddrMask | (g.ram + ramSize)
		}, wantErr: true},
		{name: "extra leaf past the guest's size", corrupt: func(g *testGuest) {
			pd := g.t.mem.Table(g.t.mem.Table(g.t.mem.Table(g.t.root)[0] & AddrMask)[0] & AddrMask)
			pd[ramSize/LargeSize] = g.t.f.leaf(g.ram+ramSize, PermRW, levelPD)
		}, wantErr: true},
		{name: "page table inside guest RAM", corrupt: func(g *testGuest) {
			pd := g.t.mem.Table(g.t.mem.Table(g.t.mem.Table(g.t.root)[0] & AddrMask)[0] & AddrMask)
			pd[1] = g.t.f.table(g.ram + LargeSize)
		}, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newNPTGuest(t, ramSize, MapOpt{Large: c.large})
			if c.corrupt != nil {
				c.corrupt(g)
			}
			mapped, err := g.t.CheckConfined(g.ram, g.ram+ramSize)
			if c.wantErr {
				if err == nil {
					t.Fatalf("stray entry not found (%d bytes mapped)", mapped)
				}
				t.Logf("found: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mapped != ramSize {
				t.Errorf("%d bytes mapped, want %d", mapped, ramSize)
			}
		})
	}
	g := newNPTGuest(t, ramSize, MapOpt{})
	if _, err := g.t.CheckConfined(g.ram, g.ram); err == nil {
		t.Error("an empty range passed")
	}
}
