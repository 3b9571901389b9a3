package ept

import "fmt"

// AMD-V nested page tables (NPT) share this package's walker, visitors and
// dirty harvest: a nested table is an ordinary AMD64 long-mode 4-level page
// table (AMD64 Architecture Programmer's Manual Vol. 2, 5.3 "Long-Mode Page
// Translation", 5.4 "Page-Translation-Table Entry Fields") that translates
// guest-physical to host-physical addresses (15.25 "Nested Paging"). Only
// the bits of an entry differ from EPT's; format holds them.
//
// Nested walks are user accesses (15.25, "Nested Table Walk"), so every
// nested entry sets U/S or the walk faults. The CPU sets A in every entry
// it uses and D in the leaf of a write (15.25; QEMU's TCG walk and Bochs's
// do the same, as doppel's dirty test shows), so HarvestScan works
// unchanged with the NPT masks. NPT has no PML: the scan is its only
// harvest.

// Nested (long-mode) page-table entry bits, AMD APM Vol. 2, 5.4.1,
// figures 5-18 to 5-23.
const (
	// NPTPresent (P, bit 0): the entry maps something.
	NPTPresent = 1 << 0
	// NPTWrite (R/W, bit 1): writes allowed.
	NPTWrite = 1 << 1
	// NPTUser (U/S, bit 2): user accesses allowed; nested walks are user
	// accesses (15.25), so every nested entry needs it.
	NPTUser = 1 << 2
	// NPTWriteThrough (PWT, bit 3) and NPTCacheDisable (PCD, bit 4)
	// select the PAT entry with the PAT bit; all clear is PAT entry 0,
	// write-back at reset, the type for guest RAM.
	NPTWriteThrough = 1 << 3
	NPTCacheDisable = 1 << 4
	// NPTAccessed (A, bit 5) is set by the CPU in every entry it uses.
	NPTAccessed = 1 << 5
	// NPTDirty (D, bit 6) is set by the CPU in a leaf whose page is written.
	NPTDirty = 1 << 6
	// NPTPageSize (PS, bit 7) in a PDPE (1 GiB) or PDE (2 MiB) makes it a leaf.
	NPTPageSize = 1 << 7
	// NPTGlobal (G, bit 8), ignored by nested walks.
	NPTGlobal = 1 << 8
	// NPTNoExecute (NX, bit 63) forbids instruction fetches; a reserved
	// bit unless the host runs with EFER.NXE (nested walks use the host's
	// paging mode, 15.25), so doppel sets it only for mappings without
	// Execute.
	NPTNoExecute = 1 << 63
)

// format is the layout of one kind of second-level entry: EPT or NPT.
// Hot loops read its masks from fields, so both kinds share the code.
type format struct {
	nested bool
	// presentMask: an entry maps something if any of these bits is set.
	presentMask uint64
	accessed    uint64
	dirty       uint64
	large       uint64
	// keep are the bits a split copies into each smaller leaf.
	keep uint64
}

var (
	formatEPT = format{
		presentMask: Read | Write | Execute,
		accessed:    Accessed, dirty: Dirty, large: LargePage,
		keep: Read | Write | Execute | MemoryTypeMask | IgnorePAT | Accessed | Dirty | ExecuteUser | SuppressVE,
	}
	formatNPT = format{
		nested:      true,
		presentMask: NPTPresent,
		accessed:    NPTAccessed, dirty: NPTDirty, large: NPTPageSize,
		keep: NPTPresent | NPTWrite | NPTUser | NPTWriteThrough | NPTCacheDisable | NPTAccessed | NPTDirty | NPTNoExecute,
	}
)

func (f *format) name() string {
	if f.nested {
		return "npt"
	}
	return "ept"
}

func (f *format) present(e uint64) bool { return e&f.presentMask != 0 }

func (f *format) isLeaf(e uint64, level int) bool { return level == levelPT || e&f.large != 0 }

// leaf builds a leaf for host address hpa with permission p: for EPT
// write-back with the PAT ignored (SDM Vol. 3C 29.3.7), for NPT PAT entry
// 0 (write-back) and U/S set.
func (f *format) leaf(hpa uint64, p Perm, level int) uint64 {
	var e uint64
	if f.nested {
		e = hpa&AddrMask | nptPermBits(p)
	} else {
		e = hpa&AddrMask | uint64(p) | MemoryTypeWB<<MemoryTypeShift | IgnorePAT
	}
	if level != levelPT {
		e |= f.large
	}
	return e
}

// table builds a non-leaf entry pointing at the table at pa. Non-leaf
// entries allow everything; the leaf decides.
func (f *format) table(pa uint64) uint64 {
	if f.nested {
		return pa&AddrMask | NPTPresent | NPTWrite | NPTUser
	}
	return pa&AddrMask | Read | Write | Execute
}

// perm returns the permission a present leaf grants.
func (f *format) perm(e uint64) Perm {
	if !f.nested {
		return Perm(e & uint64(PermRWX))
	}
	if e&NPTPresent == 0 {
		return PermNone
	}
	p := Perm(Read)
	if e&NPTWrite != 0 {
		p |= Write
	}
	if e&NPTNoExecute == 0 {
		p |= Execute
	}
	return p
}

// withPerm returns the leaf e with its permission replaced by p.
func (f *format) withPerm(e uint64, p Perm) uint64 {
	if !f.nested {
		return e&^uint64(PermRWX) | uint64(p)
	}
	return e&^uint64(NPTPresent|NPTWrite|NPTUser|NPTNoExecute) | nptPermBits(p)
}

func nptPermBits(p Perm) uint64 {
	if p == PermNone {
		return 0
	}
	e := uint64(NPTPresent | NPTUser)
	if p&Write != 0 {
		e |= NPTWrite
	}
	if p&Execute == 0 {
		e |= NPTNoExecute
	}
	return e
}

// validPerm rejects what the format cannot express: for EPT write without
// read (an EPT misconfiguration, SDM Vol. 3C 29.3.3.1); for NPT also
// execute without read (a present long-mode entry is always readable).
func (f *format) validPerm(p Perm) error {
	if err := validPerm(p); err != nil {
		return err
	}
	if f.nested && p&Execute != 0 && p&Read == 0 {
		return fmt.Errorf("ept: permission %v is executable but not readable (NPT cannot express it)", p)
	}
	return nil
}

// NCR3 returns the nested page-table base for the VMCB's N_CR3 field (AMD
// APM Vol. 2, 15.25 and App. B): the root's physical address, PWT and PCD clear
// (the root is read write-back). Only for tables built with
// Options.Nested.
func (t *Tables) NCR3() uint64 { return t.root }

// Nested reports whether the tables use the NPT format.
func (t *Tables) Nested() bool { return t.f.nested }

// CheckConfined walks the whole table and checks that it can reach no host
// memory but [lo, hi): every present leaf maps a frame range inside it, and
// no table frame lies inside it (a guest that could write its own tables
// could map anything). It returns the bytes the present leaves map.
//
// Why: the guest writes whatever its tables map with no exit, so one stray
// leaf (a wrong large-page frame, an identity-mapped range, a range past the
// guest's RAM) lets it overwrite the hypervisor. vmm/pc runs this over the
// nested tables before the first VMRUN and refuses to run the guest if it
// fails.
func (t *Tables) CheckConfined(lo, hi uint64) (uint64, error) {
	if lo >= hi {
		return 0, fmt.Errorf("ept: confinement range [%#x, %#x) is empty", lo, hi)
	}
	if t.root >= lo && t.root < hi {
		return 0, fmt.Errorf("ept: root table %#x inside guest memory [%#x, %#x)", t.root, lo, hi)
	}
	v := &confinedVisitor{lo: lo, hi: hi}
	err := t.walk(t.root, levelPML4, 0, MaxGPA, v)
	if err == nil {
		err = v.err
	}
	if err != nil {
		return v.mapped, fmt.Errorf("%s: %w", t.f.name(), err)
	}
	return v.mapped, nil
}

type confinedVisitor struct {
	visitBase
	lo, hi, mapped uint64
	err            error
}

func (v *confinedVisitor) visit(gpa uint64, e *uint64, level int) error {
	frame, size := leafAddr(*e, level), levelSize(level)
	if frame < v.lo || frame+size > v.hi || frame+size < frame {
		return fmt.Errorf("guest-physical %#x maps host [%#x, %#x), outside guest memory [%#x, %#x)",
			gpa, frame, frame+size, v.lo, v.hi)
	}
	v.mapped += size
	return nil
}

// descend refuses (and records) a table frame inside guest memory before
// the walk reads it.
func (v *confinedVisitor) descend(e uint64, level int) bool {
	pa := e & AddrMask
	if pa+PageSize > v.lo && pa < v.hi {
		if v.err == nil {
			v.err = fmt.Errorf("level-%d table at host %#x lies inside guest memory [%#x, %#x)", level-1, pa, v.lo, v.hi)
		}
		return false
	}
	return true
}
