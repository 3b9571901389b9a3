package ept

import "fmt"

// EPT paging-structure entry bits, SDM Vol. 3C 29.3.2, tables 29-1 to 29-6.
const (
	// Read allows reads from the region the entry controls.
	Read = 1 << 0
	// Write allows writes.
	Write = 1 << 1
	// Execute allows instruction fetches (supervisor-mode fetches when
	// mode-based execute control is on).
	Execute = 1 << 2
	// MemoryTypeShift positions the EPT memory type in bits 5:3 of a leaf.
	MemoryTypeShift = 3
	// MemoryTypeMask covers bits 5:3 of a leaf.
	MemoryTypeMask = 7 << MemoryTypeShift
	// IgnorePAT makes the leaf's memory type final, ignoring the guest PAT.
	IgnorePAT = 1 << 6
	// LargePage in a PDPTE (1 GiB) or PDE (2 MiB) makes the entry a leaf.
	LargePage = 1 << 7
	// Accessed is set by the CPU when it uses the entry (EPTP A/D on).
	Accessed = 1 << 8
	// Dirty is set by the CPU in a leaf when the page it maps is written.
	Dirty = 1 << 9
	// ExecuteUser allows user-mode fetches (mode-based execute control).
	ExecuteUser = 1 << 10
	// SuppressVE suppresses #VE for EPT violations on this leaf (bit 63).
	SuppressVE = 1 << 63

	// AddrMask covers the physical address in bits 51:12 of an entry.
	AddrMask = 0x000F_FFFF_FFFF_F000
)

// EPT memory types (SDM Vol. 3C 29.3.7, and the MTRR encodings of Vol. 3A
// 12.11): the values of bits 5:3 of a leaf and of EPTP bits 2:0.
const (
	MemoryTypeUC = 0 // uncacheable
	MemoryTypeWC = 1 // write combining
	MemoryTypeWT = 4 // write through
	MemoryTypeWP = 5 // write protected
	MemoryTypeWB = 6 // write back: the type for guest RAM
)

// EPTP fields, SDM Vol. 3C 25.6.11.
const (
	// EPTPMemoryTypeWB: paging structures are accessed write-back (bits 2:0).
	EPTPMemoryTypeWB = MemoryTypeWB
	// EPTPWalkLength4 is the page-walk length minus one, 3, in bits 5:3.
	EPTPWalkLength4 = (4 - 1) << 3
	// EPTPEnableAD enables the accessed and dirty flags (bit 6).
	EPTPEnableAD = 1 << 6
)

// Page sizes of the EPT leaves.
const (
	PageSize  = 1 << 12 // 4 KiB, a PTE
	LargeSize = 1 << 21 // 2 MiB, a PDE with LargePage
	HugeSize  = 1 << 30 // 1 GiB, a PDPTE with LargePage
	// MaxGPA bounds the guest-physical addresses a 4-level walk translates.
	MaxGPA = 1 << 48
)

// Levels of the walk, counted from the leaf: a table at level l holds
// entries each mapping 1<<levelShift(l) bytes.
const (
	levelPT   = 0 // page table: 4 KiB leaves
	levelPD   = 1 // page directory: 2 MiB leaves or PTs
	levelPDPT = 2 // page-directory-pointer table: 1 GiB leaves or PDs
	levelPML4 = 3 // root
)

func levelShift(level int) uint { return 12 + 9*uint(level) }

func levelSize(level int) uint64 { return 1 << levelShift(level) }

func levelIndex(gpa uint64, level int) int { return int(gpa>>levelShift(level)) & 511 }

// Perm is the access a leaf grants, a combination of Read, Write, Execute.
type Perm uint64

// Common permissions.
const (
	PermNone Perm = 0
	PermRW   Perm = Read | Write
	PermRX   Perm = Read | Execute
	PermRWX  Perm = Read | Write | Execute
)

func (p Perm) String() string {
	b := []byte("---")
	if p&Read != 0 {
		b[0] = 'r'
	}
	if p&Write != 0 {
		b[1] = 'w'
	}
	if p&Execute != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// validPerm rejects write-only and write+execute without read, which the
// CPU treats as an EPT misconfiguration (SDM Vol. 3C 29.3.3.1).
func validPerm(p Perm) error {
	if p&^PermRWX != 0 {
		return fmt.Errorf("ept: permission %#x has bits other than RWX", uint64(p))
	}
	if p&Write != 0 && p&Read == 0 {
		return fmt.Errorf("ept: permission %v is writable but not readable (EPT misconfiguration)", p)
	}
	return nil
}

// present reports whether an EPT entry maps anything: any of bits 2:0
// set. The PML paths, which exist only for EPT, use it; the rest goes
// through Tables.f (npt.go).
func present(e uint64) bool { return e&(Read|Write|Execute) != 0 }

// leafAddr returns the host address a leaf at level maps.
func leafAddr(e uint64, level int) uint64 {
	return e & AddrMask &^ (levelSize(level) - 1)
}
