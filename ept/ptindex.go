package ept

import "sync/atomic"

// The PML drain's per-page cost was a four-level walk through the PhysMem
// interface: 4 calls of Table, each with its range check, plus the loop,
// about 300 instructions a page (measured under Bochs and with callgrind on
// the host). ptIndex replaces the walk by one lookup: the page table under
// each 2 MiB slot of guest-physical space, found by one walk of the upper
// levels and kept until the tables' structure changes (Map, Unmap and
// Protect drop it; the next drain rebuilds it).

// maxPTIndexSlots bounds the index: 2 MiB slots up to 64 GiB (256 KiB of
// pointers). Pages above go the slow way.
const maxPTIndexSlots = 1 << 15

// pageShift is log2(PageSize): a guest-physical address's frame number.
const pageShift = 12

// dropPTIndex forgets the index; every change to the tables' structure
// calls it before it changes anything.
func (t *Tables) dropPTIndex() { t.ptIndex, t.ptIndexOK = t.ptIndex[:0], false }

// buildPTIndex records, for each 2 MiB slot below maxPTIndexSlots that a
// page-directory entry maps through a page table, that table; other slots
// (2 MiB or 1 GiB leaves, unmapped) stay nil.
func (t *Tables) buildPTIndex() {
	idx := t.ptIndex[:0]
	root := t.mem.Table(t.root)
	for i4 := 0; i4 < 512 && len(idx) < maxPTIndexSlots; i4++ {
		e4 := root[i4]
		if !present(e4) {
			continue
		}
		pdpt := t.mem.Table(e4 & AddrMask)
		for i3 := range 512 {
			e3 := pdpt[i3]
			if !present(e3) || t.f.isLeaf(e3, levelPDPT) {
				continue
			}
			pd := t.mem.Table(e3 & AddrMask)
			base := (i4*512 + i3) * 512
			for i2 := range 512 {
				e2 := pd[i2]
				if !present(e2) || t.f.isLeaf(e2, levelPD) || base+i2 >= maxPTIndexSlots {
					continue
				}
				for len(idx) <= base+i2 {
					idx = append(idx, nil)
				}
				idx[base+i2] = t.mem.Table(e2 & AddrMask)
			}
		}
	}
	t.ptIndex, t.ptIndexOK = idx, true
}

// drainLog clears the dirty flag of the page each logged address lies in
// and adds its frame to into: one index lookup for a 4 KiB page, the walk
// (clearDirty) for the rest.
func (t *Tables) drainLog(log []uint64, into *Bitmap) {
	if !t.ptIndexOK {
		t.buildPTIndex()
	}
	for i := 0; i < len(log); {
		n := drainIndexed(t.ptIndex, log[i:], into)
		t.visited += uint64(n) // one entry read each; clearDirty counts its own
		if i += n; i < len(log) {
			t.clearDirty(log[i]&^(PageSize-1), into)
			i++
		}
	}
}

// drainIndexed drains the leading entries of log whose 4 KiB leaf the
// index holds and returns how many; it stops at the first other one. It
// calls nothing, so the loop keeps its state in registers.
func drainIndexed(idx []*[512]uint64, log []uint64, into *Bitmap) int {
	for i, gpa := range log {
		slot := gpa >> levelShift(levelPD)
		if slot >= uint64(len(idx)) {
			return i
		}
		pt := idx[slot]
		if pt == nil {
			return i
		}
		e := &pt[gpa>>pageShift&511]
		if !present(*e) {
			return i
		}
		atomic.AndUint64(e, ^uint64(Dirty))
		into.Set(gpa >> pageShift)
	}
	return len(log)
}
