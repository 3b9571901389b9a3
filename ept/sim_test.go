package ept

import "testing"

// countInv counts INVEPTs.
type countInv struct {
	n    int
	eptp uint64
}

func (c *countInv) InvalidateSingleContext(eptp uint64) error {
	c.n++
	c.eptp = eptp
	return nil
}

// testGuest is tables over a host region with guest RAM of ramSize mapped
// at guest-physical 0.
type testGuest struct {
	r   *Region
	t   *Tables
	inv *countInv
	ram uint64 // host address of guest RAM
}

const testRegionBase = 0x4000_0000

func newTestGuest(tb testing.TB, ramSize uint64, o MapOpt) *testGuest {
	tb.Helper()
	// Room for the RAM and its tables (about 1/512 of it) plus slack.
	r, err := NewHostRegion(testRegionBase, ramSize+ramSize/256+16*PageSize+LargeSize)
	if err != nil {
		tb.Fatal(err)
	}
	inv := &countInv{}
	t, err := New(r, inv, Options{AccessedDirty: true})
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

// leaves collects every present leaf, as checkMappings compares them.
type leafCollector struct {
	visitBase
	got []Mapping
}

func (v *leafCollector) visit(gpa uint64, e *uint64, level int) error {
	v.got = append(v.got, Mapping{GPA: gpa, HPA: leafAddr(*e, level), Size: levelSize(level), Perm: Perm(*e & uint64(PermRWX)), Entry: *e})
	return nil
}

// checkMappings asserts that the leaves of t are exactly want (ignoring
// Entry), in guest-address order, and that each is write-back with IPAT.
func checkMappings(t *testing.T, tb *Tables, want []Mapping) {
	t.Helper()
	var v leafCollector
	if err := tb.walk(tb.root, levelPML4, 0, MaxGPA, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.got) != len(want) {
		t.Fatalf("got %d leaves, want %d:\n got %+v\nwant %+v", len(v.got), len(want), short(v.got), want)
	}
	for i, g := range v.got {
		w := want[i]
		if g.GPA != w.GPA || g.HPA != w.HPA || g.Size != w.Size || g.Perm != w.Perm {
			t.Errorf("leaf %d: got gpa %#x hpa %#x size %#x %v, want gpa %#x hpa %#x size %#x %v",
				i, g.GPA, g.HPA, g.Size, g.Perm, w.GPA, w.HPA, w.Size, w.Perm)
		}
		if mt := g.Entry & MemoryTypeMask >> MemoryTypeShift; mt != MemoryTypeWB || g.Entry&IgnorePAT == 0 {
			t.Errorf("leaf %d: memory type %d IPAT %v, want WB(6) with IPAT", i, mt, g.Entry&IgnorePAT != 0)
		}
		if (g.Size != PageSize) != (g.Entry&LargePage != 0) {
			t.Errorf("leaf %d of size %#x: large-page bit %v", i, g.Size, g.Entry&LargePage != 0)
		}
	}
}

func short(m []Mapping) []Mapping {
	if len(m) > 8 {
		return m[:8]
	}
	return m
}

// pages expands [gpa, gpa+n*size) at hpa into leaves of size.
func pages(gpa, hpa uint64, n int, size uint64, p Perm) []Mapping {
	var m []Mapping
	for i := range n {
		off := uint64(i) * size
		m = append(m, Mapping{GPA: gpa + off, HPA: hpa + off, Size: size, Perm: p})
	}
	return m
}
