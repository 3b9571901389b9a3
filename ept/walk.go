package ept

// visitor is one operation over a range of guest-physical addresses. The
// walker calls visit for each leaf (present, or an empty slot the visitor
// fills) and lets the visitor steer: allocate missing tables, split large
// leaves the range covers partly, skip subtrees, tidy up after a subtree.
type visitor interface {
	// allocates: walk into missing tables, creating them (Map).
	allocates() bool
	// splits: turn a large leaf the range covers partly into a table of
	// smaller leaves before visiting (Unmap, Protect).
	splits() bool
	// leafAt reports whether an empty entry at level, covering exactly
	// [gpa, gpa+levelSize(level)), should be filled as a large leaf.
	leafAt(gpa uint64, level int) bool
	// descend reports whether to walk the table under present non-leaf e.
	descend(e uint64, level int) bool
	// visit acts on the entry e for [gpa, ...) at level: a present leaf,
	// or an empty slot when the visitor allocates.
	visit(gpa uint64, e *uint64, level int) error
	// ascend runs after the subtree under the non-leaf e was walked; its
	// table is at pa.
	ascend(e *uint64, pa uint64, level int) error
}

// ptVisitor is an optional fast path: a visitor that implements it gets
// the entries [lo, hi) of a page table (level 0) in one call instead of one
// visit per present entry. The dirty scan uses it: most of its work is
// reading page tables.
type ptVisitor interface {
	visitPT(tbl *[512]uint64, base uint64, lo, hi int)
}

// visitBase gives a visitor the defaults: no allocation, no split, no large
// leaves, walk every subtree, nothing on the way up.
type visitBase struct{}

func (visitBase) allocates() bool                   { return false }
func (visitBase) splits() bool                      { return false }
func (visitBase) leafAt(uint64, int) bool           { return false }
func (visitBase) descend(uint64, int) bool          { return true }
func (visitBase) ascend(*uint64, uint64, int) error { return nil }

// walk visits [start, end) of the table at pa, at level. It counts every
// entry it reads in t.visited, the measure of a walk's cost.
func (t *Tables) walk(pa uint64, level int, start, end uint64, v visitor) error {
	tbl := t.mem.Table(pa)
	size := levelSize(level)
	if level == levelPT {
		if pv, ok := v.(ptVisitor); ok {
			lo, hi := levelIndex(start, levelPT), levelIndex(end-1, levelPT)+1
			t.visited += uint64(hi - lo)
			pv.visitPT(tbl, start&^(levelSize(levelPD)-1), lo, hi)
			return nil
		}
	}
	alloc := v.allocates()
	for gpa := start; gpa < end; {
		entryStart := gpa &^ (size - 1)
		next := entryStart + size
		idx := levelIndex(gpa, level)
		e := &tbl[idx]
		t.visited++
		if *e == 0 && !alloc {
			// Nothing here and nothing to create: skip the whole run of
			// empty entries in one tight loop (the upper levels of a
			// guest's tables are nearly all empty, and a scan of 1,536
			// of them entry by entry was most of a small harvest).
			j, last := idx+1, levelIndex(end-1, level)
			for j <= last && tbl[j] == 0 {
				j++
			}
			t.visited += uint64(j - idx - 1)
			gpa = entryStart + uint64(j-idx)*size
			continue
		}
		segEnd := min(end, next)
		full := gpa == entryStart && segEnd == next
		if err := t.walkEntry(e, level, gpa, segEnd, full, v); err != nil {
			return err
		}
		gpa = next
	}
	return nil
}

// walkEntry handles one entry of a table: [gpa, end) is the part of the
// walked range inside it, full whether that is all of it.
func (t *Tables) walkEntry(e *uint64, level int, gpa, end uint64, full bool, v visitor) error {
	cur := *e
	switch {
	case t.f.present(cur) && t.f.isLeaf(cur, level):
		if full || !v.splits() {
			return v.visit(gpa&^(levelSize(level)-1), e, level)
		}
		if err := t.split(e, level); err != nil {
			return err
		}
	case !t.f.present(cur):
		if level == levelPT || (full && v.leafAt(gpa, level)) {
			if v.allocates() {
				return v.visit(gpa, e, level)
			}
			return nil
		}
		if !v.allocates() {
			return nil
		}
		pa, err := t.mem.AllocTable()
		if err != nil {
			return err
		}
		*e = t.f.table(pa)
	}
	if !v.descend(*e, level) {
		return nil
	}
	pa := *e & AddrMask
	if err := t.walk(pa, level-1, gpa, end, v); err != nil {
		return err
	}
	return v.ascend(e, pa, level)
}

// split replaces the large leaf *e at level by a table of 512 leaves one
// level down with the same addresses, permissions and A/D flags (a dirty
// large page stays dirty in every part).
func (t *Tables) split(e *uint64, level int) error {
	pa, err := t.mem.AllocTable()
	if err != nil {
		return err
	}
	old := *e
	tbl := t.mem.Table(pa)
	hpa := leafAddr(old, level)
	keep := old & t.f.keep
	step := levelSize(level - 1)
	large := uint64(0)
	if level-1 != levelPT {
		large = t.f.large
	}
	for i := range tbl {
		tbl[i] = (hpa+uint64(i)*step)&AddrMask | keep | large
	}
	*e = t.f.table(pa) | old&t.f.accessed
	t.splitCount++
	return nil
}
