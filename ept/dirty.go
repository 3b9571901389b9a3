package ept

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// DirtySource yields the guest frames written since its previous harvest.
// Harvest adds them to into (it does not clear into first). The FT engine
// consumes this interface.
type DirtySource interface {
	Harvest(into *Bitmap) error
}

// ErrNoAD is returned by a dirty harvest of tables built without EPT A/D.
var ErrNoAD = errors.New("ept: accessed/dirty flags not enabled")

// HarvestScan adds to into the frame of every page whose leaf has the dirty
// flag, clearing the flag, and clears the accessed flag of every upper-level
// entry it walks. A subtree whose upper accessed flag is clear is skipped:
// the CPU sets that flag on every translation through it (SDM Vol. 3C
// 29.3.5), so nothing under it was written. Ends with one INVEPT so the CPU
// sets the flags again on the next access. See the package doc on when the
// result is exact.
func (t *Tables) HarvestScan(into *Bitmap) error {
	if !t.ad {
		return ErrNoAD
	}
	v := harvestVisitor{into: into, accessed: t.f.accessed, dirty: t.f.dirty}
	if err := t.walk(t.root, levelPML4, 0, MaxGPA, &v); err != nil {
		return fmt.Errorf("ept: harvest: %w", err)
	}
	return t.invalidate("harvest")
}

type harvestVisitor struct {
	visitBase
	into *Bitmap
	// The format's flags (EPT or NPT), in the visitor so the loops keep
	// them in registers.
	accessed, dirty uint64
}

// descend skips subtrees not used since the last harvest.
func (v *harvestVisitor) descend(e uint64, _ int) bool { return e&v.accessed != 0 }

func (v *harvestVisitor) visit(gpa uint64, e *uint64, level int) error {
	if *e&v.dirty == 0 {
		return nil
	}
	if atomic.AndUint64(e, ^v.dirty)&v.dirty != 0 {
		v.into.SetRange(gpa/PageSize, levelSize(level)/PageSize)
	}
	return nil
}

// visitPT test-and-clears the dirty flags of a page table's leaves.
func (v *harvestVisitor) visitPT(tbl *[512]uint64, base uint64, lo, hi int) {
	gfn := base / PageSize
	d := v.dirty
	for i := lo; i < hi; i++ {
		if tbl[i]&d != 0 && atomic.AndUint64(&tbl[i], ^d)&d != 0 {
			v.into.Set(gfn + uint64(i))
		}
	}
}

func (v *harvestVisitor) ascend(e *uint64, _ uint64, _ int) error {
	atomic.AndUint64(e, ^v.accessed)
	return nil
}

// ScanSource is the DirtySource that scans the tables' dirty flags.
type ScanSource struct{ T *Tables }

// Harvest implements DirtySource.
func (s ScanSource) Harvest(into *Bitmap) error { return s.T.HarvestScan(into) }

var _ DirtySource = ScanSource{}
