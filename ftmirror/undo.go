package ftmirror

// undoLog protects the last committed epoch on the secondary while the next
// one is applied in place: before the first write to a page in an epoch the
// page's committed contents are saved; commit forgets them, rollback writes
// them back. See doc.go for why an undo log rather than a staging buffer.
type undoLog struct {
	saved map[uint32]int // pfn -> slot in buf
	pfns  []uint32
	buf   []byte // slots of PageSize, reused across epochs
}

// undoPages is how many pages the undo log holds before it must grow:
// enough for a checkpoint of 12,000 dirty pages/s at 25 ms epochs three
// times over, so that the first protected epochs do not wait for memory.
const undoPages = 1024

func newUndoLog(alloc func(int) []byte) *undoLog {
	return &undoLog{saved: make(map[uint32]int, undoPages), buf: alloc(undoPages * PageSize)[:0]}
}

// save records page pfn's committed contents unless already saved this epoch.
func (u *undoLog) save(pfn uint32, page []byte) {
	if _, ok := u.saved[pfn]; ok {
		return
	}
	slot := len(u.pfns)
	u.saved[pfn] = slot
	u.pfns = append(u.pfns, pfn)
	need := (slot + 1) * PageSize
	if need > len(u.buf) {
		if need <= cap(u.buf) {
			u.buf = u.buf[:need]
		} else {
			nb := make([]byte, need, 2*need)
			copy(nb, u.buf)
			u.buf = nb
		}
	}
	copy(u.buf[slot*PageSize:need], page)
}

// commit forgets the saved pages: the applied epoch is now the committed one.
func (u *undoLog) commit() {
	clear(u.saved)
	u.pfns = u.pfns[:0]
	u.buf = u.buf[:0]
}

// rollback restores every saved page, returning memory to the committed
// epoch, and returns how many pages it restored.
func (u *undoLog) rollback(mem Memory) int {
	for i, pfn := range u.pfns {
		copy(mem.Page(pfn), u.buf[i*PageSize:(i+1)*PageSize])
	}
	n := len(u.pfns)
	u.commit()
	return n
}
