package ftmirror

// undoLog protects the last committed epoch on the secondary while the next
// one is applied in place: before the first write to a page in an epoch the
// page's committed contents are saved; commit forgets them, rollback writes
// them back. See doc.go for why an undo log rather than a staging buffer.
type undoLog struct {
	saved map[uint32]int // pfn -> slot
	pfns  []uint32
	slots snapshot // page slots, grown by chunks and reused across epochs
}

// undoPages is how many pages the undo log holds before it must grow:
// enough for a checkpoint of 12,000 dirty pages/s at 25 ms epochs three
// times over, so that the first protected epochs do not wait for memory.
// It grows by 1 MiB chunks and keeps them (snapshot): a larger epoch used
// to reallocate and copy the whole log on the Go heap in the middle of an
// apply.
const undoPages = 1024

func newUndoLog(alloc func(int) []byte) *undoLog {
	u := &undoLog{saved: make(map[uint32]int, undoPages), slots: snapshot{alloc: alloc}}
	u.slots.grow(undoPages)
	return u
}

// save records page pfn's committed contents unless already saved this epoch.
func (u *undoLog) save(pfn uint32, page []byte) {
	if _, ok := u.saved[pfn]; ok {
		return
	}
	slot := len(u.pfns)
	u.saved[pfn] = slot
	u.pfns = append(u.pfns, pfn)
	u.slots.grow(slot + 1)
	copy(u.slots.page(slot), page)
}

// commit forgets the saved pages: the applied epoch is now the committed one.
func (u *undoLog) commit() {
	clear(u.saved)
	u.pfns = u.pfns[:0]
}

// rollback restores every saved page, returning memory to the committed
// epoch, and returns how many pages it restored.
func (u *undoLog) rollback(mem Memory) int {
	for i, pfn := range u.pfns {
		copy(mem.Page(pfn), u.slots.page(i))
	}
	n := len(u.pfns)
	u.commit()
	return n
}
