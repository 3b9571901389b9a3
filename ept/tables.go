package ept

import (
	"errors"
	"fmt"
)

// Invalidator drops the CPU's cached translations derived from the tables
// (INVEPT single-context on hardware, SDM Vol. 3C 29.4.3.1).
type Invalidator interface {
	InvalidateSingleContext(eptp uint64) error
}

// ErrMapped is returned by Map for a guest range that is already mapped.
var ErrMapped = errors.New("ept: guest range already mapped")

// Tables is one 4-level EPT hierarchy. It is not safe for concurrent use;
// the CPU is its only concurrent writer, and only of A/D flags.
type Tables struct {
	mem  PhysMem
	inv  Invalidator
	root uint64
	ad   bool
	f    *format

	visited    uint64 // entries read by walks: the cost measure
	splitCount uint64

	// ptIndex maps 2 MiB slots to their page tables for the PML drain
	// (ptindex.go); valid while ptIndexOK.
	ptIndex   []*[512]uint64
	ptIndexOK bool
}

// Options select optional EPT features.
type Options struct {
	// AccessedDirty enables EPT A/D flags (EPTP bit 6); the CPU must
	// report bit 21 of IA32_VMX_EPT_VPID_CAP.
	AccessedDirty bool
	// Nested builds AMD-V nested page tables (npt.go) instead of EPT.
	// Their A/D flags are always on: AccessedDirty is implied.
	Nested bool
}

// New allocates an empty root table from mem.
func New(mem PhysMem, inv Invalidator, opt Options) (*Tables, error) {
	root, err := mem.AllocTable()
	if err != nil {
		return nil, fmt.Errorf("ept: root table: %w", err)
	}
	t := &Tables{mem: mem, inv: inv, root: root, ad: opt.AccessedDirty, f: &formatEPT}
	if opt.Nested {
		t.ad, t.f = true, &formatNPT
	}
	return t, nil
}

// EPTP returns the EPT pointer for the VMCS (SDM Vol. 3C 25.6.11):
// write-back walks, 4 levels, A/D as configured, the root's address. For
// nested tables it is NCR3, the value the Invalidator is given.
func (t *Tables) EPTP() uint64 {
	if t.f.nested {
		return t.NCR3()
	}
	p := t.root | EPTPMemoryTypeWB | EPTPWalkLength4
	if t.ad {
		p |= EPTPEnableAD
	}
	return p
}

// Visited returns the number of entries all walks so far have read.
func (t *Tables) Visited() uint64 { return t.visited }

// Splits returns how many large leaves were split.
func (t *Tables) Splits() uint64 { return t.splitCount }

func (t *Tables) invalidate(op string) error {
	if t.inv == nil {
		return nil
	}
	if err := t.inv.InvalidateSingleContext(t.EPTP()); err != nil {
		return fmt.Errorf("ept: %s: invalidate %s: %w", op, t.f.name(), err)
	}
	return nil
}

func checkRange(op string, gpa, size uint64) error {
	if gpa%PageSize != 0 || size%PageSize != 0 || size == 0 {
		return fmt.Errorf("ept: %s [%#x+%#x): not page aligned", op, gpa, size)
	}
	if gpa >= MaxGPA || MaxGPA-gpa < size {
		return fmt.Errorf("ept: %s [%#x+%#x): beyond the 48-bit guest-physical space", op, gpa, size)
	}
	return nil
}

// MapOpt are options of Map.
type MapOpt struct {
	// Large allows 2 MiB leaves where guest and host addresses are both
	// 2 MiB aligned. Dirty tracking then reports whole 2 MiB pages.
	Large bool
}

// Map maps guest [gpa, gpa+size) to host [hpa, hpa+size) with permission
// p. The host range must be guest RAM of the PhysMem, and the guest range
// unmapped.
func (t *Tables) Map(gpa, size, hpa uint64, p Perm, o MapOpt) error {
	t.dropPTIndex()
	if err := checkRange("map", gpa, size); err != nil {
		return err
	}
	if hpa%PageSize != 0 {
		return fmt.Errorf("ept: map host address %#x not page aligned", hpa)
	}
	if err := t.f.validPerm(p); err != nil {
		return err
	}
	if err := t.mem.CheckBacking(hpa, size); err != nil {
		return fmt.Errorf("ept: map [%#x+%#x): %w", gpa, size, err)
	}
	v := mapVisitor{f: t.f, start: gpa, hpa: hpa, perm: p, large: o.Large}
	err := t.walk(t.root, levelPML4, gpa, gpa+size, &v)
	if err != nil {
		err = fmt.Errorf("ept: map [%#x+%#x): %w", gpa, size, err)
	}
	return errors.Join(err, t.invalidate("map"))
}

type mapVisitor struct {
	visitBase
	f          *format
	start, hpa uint64
	perm       Perm
	large      bool
}

func (*mapVisitor) allocates() bool { return true }

func (v *mapVisitor) leafAt(gpa uint64, level int) bool {
	return v.large && level == levelPD && (v.hpa+gpa-v.start)%LargeSize == 0
}

func (v *mapVisitor) visit(gpa uint64, e *uint64, level int) error {
	if v.f.present(*e) {
		return fmt.Errorf("%#x: %w", gpa, ErrMapped)
	}
	*e = v.f.leaf(v.hpa+gpa-v.start, v.perm, level)
	return nil
}

// Unmap removes every mapping in [gpa, gpa+size), splitting large leaves
// it covers partly and freeing tables it empties.
func (t *Tables) Unmap(gpa, size uint64) error {
	t.dropPTIndex()
	if err := checkRange("unmap", gpa, size); err != nil {
		return err
	}
	err := t.walk(t.root, levelPML4, gpa, gpa+size, &unmapVisitor{t: t})
	if err != nil {
		err = fmt.Errorf("ept: unmap [%#x+%#x): %w", gpa, size, err)
	}
	return errors.Join(err, t.invalidate("unmap"))
}

type unmapVisitor struct {
	visitBase
	t *Tables
}

func (*unmapVisitor) splits() bool { return true }

func (*unmapVisitor) visit(_ uint64, e *uint64, _ int) error {
	*e = 0
	return nil
}

func (v *unmapVisitor) ascend(e *uint64, pa uint64, _ int) error {
	for _, x := range v.t.mem.Table(pa) {
		if x != 0 {
			return nil
		}
	}
	*e = 0
	v.t.mem.FreeTable(pa)
	return nil
}

// Protect sets the permission of every mapped page in [gpa, gpa+size) to p,
// splitting large leaves it covers partly. Unmapped parts stay unmapped.
func (t *Tables) Protect(gpa, size uint64, p Perm) error {
	t.dropPTIndex()
	if err := checkRange("protect", gpa, size); err != nil {
		return err
	}
	if err := t.f.validPerm(p); err != nil {
		return err
	}
	if p == PermNone {
		return t.Unmap(gpa, size)
	}
	err := t.walk(t.root, levelPML4, gpa, gpa+size, &protectVisitor{f: t.f, perm: p})
	if err != nil {
		err = fmt.Errorf("ept: protect [%#x+%#x): %w", gpa, size, err)
	}
	return errors.Join(err, t.invalidate("protect"))
}

type protectVisitor struct {
	visitBase
	f    *format
	perm Perm
}

func (*protectVisitor) splits() bool { return true }

func (v *protectVisitor) visit(_ uint64, e *uint64, _ int) error {
	*e = v.f.withPerm(*e, v.perm)
	return nil
}

// Mapping is what Lookup finds for a guest address.
type Mapping struct {
	GPA  uint64 // start of the leaf's guest page
	HPA  uint64 // start of the host page
	Size uint64 // PageSize, LargeSize or HugeSize
	Perm Perm
	// Entry is the raw leaf, with its memory type and A/D flags.
	Entry uint64
}

// Lookup returns the leaf mapping gpa, if any.
func (t *Tables) Lookup(gpa uint64) (Mapping, bool) {
	if gpa >= MaxGPA {
		return Mapping{}, false
	}
	v := lookupVisitor{f: t.f}
	_ = t.walk(t.root, levelPML4, gpa&^(PageSize-1), gpa&^(PageSize-1)+PageSize, &v)
	return v.m, v.ok
}

type lookupVisitor struct {
	visitBase
	f  *format
	m  Mapping
	ok bool
}

func (v *lookupVisitor) visit(gpa uint64, e *uint64, level int) error {
	v.m = Mapping{GPA: gpa, HPA: leafAddr(*e, level), Size: levelSize(level), Perm: v.f.perm(*e), Entry: *e}
	v.ok = true
	return nil
}
