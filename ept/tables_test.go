package ept

import (
	"errors"
	"slices"
	"testing"
)

func TestEntryBits(t *testing.T) {
	// SDM Vol. 3C tables 29-1..29-6 and 25.6.11.
	for _, c := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"Read bit 0", Read, 1 << 0},
		{"Write bit 1", Write, 1 << 1},
		{"Execute bit 2", Execute, 1 << 2},
		{"WB in bits 5:3", MemoryTypeWB << MemoryTypeShift, 0x30},
		{"IgnorePAT bit 6", IgnorePAT, 1 << 6},
		{"LargePage bit 7", LargePage, 1 << 7},
		{"Accessed bit 8", Accessed, 1 << 8},
		{"Dirty bit 9", Dirty, 1 << 9},
		{"ExecuteUser bit 10", ExecuteUser, 1 << 10},
		{"SuppressVE bit 63", SuppressVE, 1 << 63},
		{"EPTP walk length 4-1 in bits 5:3", EPTPWalkLength4, 3 << 3},
		{"EPTP A/D bit 6", EPTPEnableAD, 1 << 6},
		{"4K leaf rwx at 0x1234000", formatEPT.leaf(0x1234000, PermRWX, levelPT), 0x1234000 | 7 | 0x30 | 0x40},
		{"2M leaf rw at 0x40000000", formatEPT.leaf(0x4000_0000, PermRW, levelPD), 0x4000_0000 | 3 | 0x30 | 0x40 | 0x80},
		{"table entry", formatEPT.table(0x5000), 0x5000 | 7},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestEPTP(t *testing.T) {
	for _, ad := range []bool{false, true} {
		r, _ := NewHostRegion(0x10_0000, 16*PageSize)
		tb, err := New(r, nil, Options{AccessedDirty: ad})
		if err != nil {
			t.Fatal(err)
		}
		want := tb.root | 6 | 3<<3
		if ad {
			want |= 1 << 6
		}
		if got := tb.EPTP(); got != want {
			t.Errorf("ad=%v: EPTP %#x, want %#x", ad, got, want)
		}
		if tb.root < r.Base() || tb.root >= r.End() {
			t.Errorf("root %#x outside the region", tb.root)
		}
	}
}

type mapOp struct {
	op        string // map, unmap, protect
	gpa, size uint64
	hpaOff    uint64 // offset into guest RAM
	perm      Perm
	large     bool
}

func TestMappings(t *testing.T) {
	const M2, G1 = LargeSize, HugeSize
	ram := uint64(testRegionBase) // AllocGuestRAM returns the region base
	for _, c := range []struct {
		name string
		ops  []mapOp
		want []Mapping
	}{
		{"one 4K page", []mapOp{{"map", 0x5000, PageSize, 0, PermRWX, false}},
			pages(0x5000, ram, 1, PageSize, PermRWX)},
		{"2M aligned uses a large leaf", []mapOp{{"map", 2 * M2, M2, 0, PermRW, true}},
			pages(2*M2, ram, 1, M2, PermRW)},
		{"2M with misaligned host stays 4K", []mapOp{{"map", 0, M2, PageSize, PermRWX, true}},
			pages(0, ram+PageSize, 512, PageSize, PermRWX)},
		{"large disallowed stays 4K", []mapOp{{"map", 0, M2, 0, PermRWX, false}},
			pages(0, ram, 512, PageSize, PermRWX)},
		{"unaligned head and tail around a large leaf", []mapOp{{"map", M2 - 2*PageSize, M2 + 3*PageSize, M2 - 2*PageSize, PermRWX, true}},
			slices.Concat(pages(M2-2*PageSize, ram+M2-2*PageSize, 2, PageSize, PermRWX),
				pages(M2, ram+M2, 1, M2, PermRWX), pages(2*M2, ram+2*M2, 1, PageSize, PermRWX))},
		{"spanning a 1G boundary", []mapOp{{"map", G1 - PageSize, 2 * PageSize, 0, PermRWX, false}},
			pages(G1-PageSize, ram, 2, PageSize, PermRWX)},
		{"sparse ranges far apart", []mapOp{
			{"map", 0x1000, PageSize, 0, PermRX, false},
			{"map", 0x7f_0000_0000, PageSize, PageSize, PermRW, false}},
			slices.Concat(pages(0x1000, ram, 1, PageSize, PermRX), pages(0x7f_0000_0000, ram+PageSize, 1, PageSize, PermRW))},
		{"unmap the middle of a large leaf splits it", []mapOp{
			{"map", 0, M2, 0, PermRWX, true},
			{"unmap", 0x1000, 0x1FF000, 0, 0, false}},
			pages(0, ram, 1, PageSize, PermRWX)},
		{"protect part of a large leaf splits it", []mapOp{
			{"map", 0, M2, 0, PermRWX, true},
			{"protect", 0, 2 * PageSize, 0, PermRX, false}},
			slices.Concat(pages(0, ram, 2, PageSize, PermRX), pages(2*PageSize, ram+2*PageSize, 510, PageSize, PermRWX))},
		{"protect a whole large leaf keeps it", []mapOp{
			{"map", 0, M2, 0, PermRWX, true},
			{"protect", 0, M2, 0, PermRW, false}},
			pages(0, ram, 1, M2, PermRW)},
		{"protect none unmaps", []mapOp{
			{"map", 0, 2 * PageSize, 0, PermRWX, false},
			{"protect", PageSize, PageSize, 0, PermNone, false}},
			pages(0, ram, 1, PageSize, PermRWX)},
		{"unmap everything", []mapOp{
			{"map", 0, 4 * M2, 0, PermRWX, true},
			{"unmap", 0, 4 * M2, 0, 0, false}},
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewHostRegion(testRegionBase, 8*M2+64*PageSize)
			if err != nil {
				t.Fatal(err)
			}
			inv := &countInv{}
			tb, err := New(r, inv, Options{AccessedDirty: true})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r.AllocGuestRAM(8*M2, M2); err != nil || got != ram {
				t.Fatalf("guest RAM at %#x, %v", got, err)
			}
			for _, o := range c.ops {
				var err error
				switch o.op {
				case "map":
					err = tb.Map(o.gpa, o.size, ram+o.hpaOff, o.perm, MapOpt{Large: o.large})
				case "unmap":
					err = tb.Unmap(o.gpa, o.size)
				case "protect":
					err = tb.Protect(o.gpa, o.size, o.perm)
				}
				if err != nil {
					t.Fatalf("%s: %v", o.op, err)
				}
			}
			checkMappings(t, tb, c.want)
			if inv.n != len(c.ops) || inv.eptp != tb.EPTP() {
				t.Errorf("%d INVEPTs of %#x, want %d of %#x", inv.n, inv.eptp, len(c.ops), tb.EPTP())
			}
		})
	}
}

func TestLookup(t *testing.T) {
	g := newTestGuest(t, 4*LargeSize, MapOpt{Large: true})
	if err := g.t.Protect(LargeSize+PageSize, PageSize, PermRX); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		gpa  uint64
		ok   bool
		want Mapping
	}{
		{0x1234, true, Mapping{GPA: 0, HPA: g.ram, Size: LargeSize, Perm: PermRWX}},
		{LargeSize + PageSize + 8, true, Mapping{GPA: LargeSize + PageSize, HPA: g.ram + LargeSize + PageSize, Size: PageSize, Perm: PermRX}},
		{LargeSize + 5*PageSize, true, Mapping{GPA: LargeSize + 5*PageSize, HPA: g.ram + LargeSize + 5*PageSize, Size: PageSize, Perm: PermRWX}},
		{4 * LargeSize, false, Mapping{}},
		{MaxGPA, false, Mapping{}},
	} {
		m, ok := g.t.Lookup(c.gpa)
		m.Entry = 0
		if ok != c.ok || m != c.want {
			t.Errorf("Lookup(%#x) = %+v, %v; want %+v, %v", c.gpa, m, ok, c.want, c.ok)
		}
	}
}

func TestMapErrors(t *testing.T) {
	g := newTestGuest(t, LargeSize, MapOpt{})
	lo, hi := g.r.TableFrames()
	for _, c := range []struct {
		name           string
		gpa, size, hpa uint64
		perm           Perm
		wantErr        error
	}{
		{"overlap", 0x1000, PageSize, g.ram, PermRWX, ErrMapped},
		{"unaligned", 0x10_0001, PageSize, g.ram, PermRWX, nil},
		{"write-only is a misconfiguration", 0x10_0000_0000, PageSize, g.ram, Write, nil},
		{"backing is a table frame", 0x10_0000_0000, PageSize, lo, PermRWX, nil},
		{"backing is kernel memory below the region", 0x10_0000_0000, PageSize, 0x10_0000, PermRWX, nil},
		{"backing runs past guest RAM", 0x10_0000_0000, 2 * PageSize, g.ram + LargeSize - PageSize, PermRWX, nil},
		{"backing past the region", 0x10_0000_0000, PageSize, hi, PermRWX, nil},
		{"beyond 48 bits", MaxGPA - PageSize, 2 * PageSize, g.ram, PermRWX, nil},
	} {
		err := g.t.Map(c.gpa, c.size, c.hpa, c.perm, MapOpt{})
		if err == nil {
			t.Errorf("%s: Map succeeded", c.name)
			continue
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("%s: %v, want %v", c.name, err, c.wantErr)
		}
	}
	// No failed Map may have left a leaf outside guest RAM.
	var v leafCollector
	_ = g.t.walk(g.t.root, levelPML4, 0, MaxGPA, &v)
	for _, m := range v.got {
		if err := g.r.CheckBacking(m.HPA, m.Size); err != nil {
			t.Errorf("leaf %#x: %v", m.GPA, err)
		}
	}
}

func TestUnmapFreesTables(t *testing.T) {
	g := newTestGuest(t, LargeSize, MapOpt{})
	before := len(g.r.free)
	if err := g.t.Unmap(0, LargeSize); err != nil {
		t.Fatal(err)
	}
	// PT, PD and PDPT are empty now; the root stays.
	if got := len(g.r.free) - before; got != 3 {
		t.Errorf("freed %d tables, want 3", got)
	}
	if _, ok := g.t.Lookup(0); ok {
		t.Error("page 0 still mapped")
	}
}

func TestRegionAllocator(t *testing.T) {
	r, err := NewHostRegion(0x100_0000, 4*LargeSize)
	if err != nil {
		t.Fatal(err)
	}
	ram, err := r.AllocGuestRAM(2*LargeSize, LargeSize)
	if err != nil || ram != 0x100_0000 {
		t.Fatalf("guest RAM %#x %v", ram, err)
	}
	pa, err := r.AllocTable()
	if err != nil || pa != r.End()-PageSize {
		t.Fatalf("first table %#x %v, want the top frame", pa, err)
	}
	if _, err := r.AllocGuestRAM(2*LargeSize, LargeSize); !errors.Is(err, ErrNoMemory) {
		t.Errorf("guest RAM overlapping tables: %v, want ErrNoMemory", err)
	}
	if _, err := NewRegion(0x1001, make([]byte, PageSize)); err == nil {
		t.Error("unaligned region accepted")
	}
}
