package ept

import (
	"fmt"
	"sync/atomic"
)

// PML log geometry, SDM Vol. 3C 29.3.6: a 4 KiB page of 512 guest-physical
// addresses. The PML index (VMCS field 0x0812) counts down from 511: the CPU
// writes entry index, then decrements it; an index outside 0-511 when the
// next address must be logged causes a page-modification-log-full VM exit.
const (
	PMLEntries    = 512
	PMLIndexStart = PMLEntries - 1
)

// PMLIndex reads and resets the VMCS PML index of a vCPU.
type PMLIndex interface {
	PMLIndex() (uint16, error)
	SetPMLIndex(uint16) error
}

// DrainPML adds to into the frames logged in log, whose PML index is index:
// entries index+1 to 511 (all 512 when index has wrapped below 0). It
// clears the dirty flag of each logged page, so its next write is logged
// again, then issues one INVEPT. A logged address inside a large leaf marks
// the whole leaf, whose further writes would not be logged. It returns the
// number of log entries consumed; the caller resets the index to 511.
func (t *Tables) DrainPML(log *[PMLEntries]uint64, index uint16, into *Bitmap) (int, error) {
	if !t.ad {
		return 0, ErrNoAD
	}
	if t.f.nested {
		return 0, fmt.Errorf("ept: nested page tables have no PML")
	}
	first := 0
	if int(index) < PMLEntries {
		first = int(index) + 1
	}
	t.drainLog(log[first:], into)
	n := PMLEntries - first
	if n == 0 {
		return 0, nil
	}
	return n, t.invalidate("pml drain")
}

// clearDirty clears the dirty flag of the leaf mapping gpa and adds its
// frames to into. An unmapped address (the guest no longer has it) only
// marks its frame.
func (t *Tables) clearDirty(gpa uint64, into *Bitmap) {
	e, level := t.leaf(gpa)
	if e == nil {
		into.Set(gpa / PageSize)
		return
	}
	atomic.AndUint64(e, ^uint64(Dirty))
	size := levelSize(level)
	into.SetRange(gpa&^(size-1)/PageSize, size/PageSize)
}

// leaf returns the leaf entry that maps gpa and its level, or nil: a
// straight walk down, the PML drain's per-page cost.
func (t *Tables) leaf(gpa uint64) (*uint64, int) {
	if gpa >= MaxGPA {
		return nil, 0
	}
	pa := t.root
	for level := levelPML4; ; level-- {
		e := &t.mem.Table(pa)[levelIndex(gpa, level)]
		t.visited++
		if !t.f.present(*e) {
			return nil, 0
		}
		if t.f.isLeaf(*e, level) {
			return e, level
		}
		pa = *e & AddrMask
	}
}

// PMLSource is the DirtySource fed by page-modification logging. Drain it
// on every PML-full VM exit; Harvest drains what is left and hands over
// everything collected since the previous Harvest.
type PMLSource struct {
	T     *Tables
	Log   *[PMLEntries]uint64 // the PML buffer, mapped from the reserved region
	Index PMLIndex
	// pending collects frames drained at PML-full exits; pendingN counts
	// those drains since the last Harvest.
	pending  *Bitmap
	pendingN int
}

// NewPMLSource returns a PMLSource for a guest of frames frames.
func NewPMLSource(t *Tables, log *[PMLEntries]uint64, idx PMLIndex, frames uint64) *PMLSource {
	return &PMLSource{T: t, Log: log, Index: idx, pending: NewBitmap(frames)}
}

// Drain moves the log into the pending set and resets the index to 511.
func (s *PMLSource) Drain() (int, error) {
	n, err := s.drain(s.pending)
	if n > 0 {
		s.pendingN++
	}
	return n, err
}

func (s *PMLSource) drain(into *Bitmap) (int, error) {
	idx, err := s.Index.PMLIndex()
	if err != nil {
		return 0, fmt.Errorf("ept: pml: read index: %w", err)
	}
	if int(idx) == PMLIndexStart {
		return 0, nil // empty log: nothing to clear, no INVEPT
	}
	n, err := s.T.DrainPML(s.Log, idx, into)
	if err != nil {
		return n, err
	}
	if err := s.Index.SetPMLIndex(PMLIndexStart); err != nil {
		return n, fmt.Errorf("ept: pml: reset index: %w", err)
	}
	return n, nil
}

// Harvest implements DirtySource. The log left since the last PML-full
// exit drains straight into into; the pending set is merged and cleared
// only when a PML-full drain filled it (each costs a pass over the whole
// bitmap).
func (s *PMLSource) Harvest(into *Bitmap) error {
	if into.Frames() != s.pending.Frames() {
		return fmt.Errorf("ept: pml: harvest into a bitmap of %d frames, the guest has %d", into.Frames(), s.pending.Frames())
	}
	if _, err := s.drain(into); err != nil {
		return err
	}
	if s.pendingN == 0 {
		return nil
	}
	if err := into.Or(s.pending); err != nil {
		return err
	}
	s.pending.Reset()
	s.pendingN = 0
	return nil
}

var _ DirtySource = (*PMLSource)(nil)
