package ept

import (
	"errors"
	"fmt"
	"unsafe"
)

// PhysMem is the physical memory the EPT tables live in and guest RAM comes
// from. Addresses are host-physical; no Go pointer is ever stored in a table.
type PhysMem interface {
	// AllocTable returns the physical address of a zeroed 4 KiB frame for
	// a paging structure.
	AllocTable() (pa uint64, err error)
	// FreeTable returns a frame obtained from AllocTable.
	FreeTable(pa uint64)
	// Table returns the frame at pa, from AllocTable, as 512 entries.
	Table(pa uint64) *[512]uint64
	// CheckBacking returns an error unless [hpa, hpa+size) lies wholly in
	// memory set aside as guest RAM: never kernel memory, never a table.
	CheckBacking(hpa, size uint64) error
}

// ErrNoMemory is returned when the region has no room left.
var ErrNoMemory = errors.New("ept: reserved region exhausted")

// Region is a PhysMem over one contiguous range of host-physical memory,
// doppel's reserved region (type doppel-reserved in /proc/doppel/memmap,
// mapped through /dev/mem), or a Go slice standing in for it in tests.
// Guest RAM is carved from the bottom, table frames from the top, so the
// two never interleave. A Region is not safe for concurrent use.
type Region struct {
	base  uint64
	mem   []byte
	low   uint64   // guest RAM is [base, low)
	high  uint64   // table frames are [high, base+len(mem))
	free  []uint64 // freed table frames
	spans []span   // guest RAM allocations
}

type span struct{ start, end uint64 }

// NewRegion manages mem, the mapping of host-physical [base, base+len(mem)).
// base and len(mem) must be 4 KiB multiples and mem 8-byte aligned.
func NewRegion(base uint64, mem []byte) (*Region, error) {
	if base%PageSize != 0 || len(mem)%PageSize != 0 || len(mem) == 0 {
		return nil, fmt.Errorf("ept: region %#x+%#x is not a non-empty 4 KiB multiple", base, len(mem))
	}
	if uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		return nil, fmt.Errorf("ept: region mapping is not 8-byte aligned")
	}
	end := base + uint64(len(mem))
	return &Region{base: base, mem: mem, low: base, high: end}, nil
}

// NewHostRegion backs a region at host-physical base with Go memory, for
// tests, benchmarks and host simulators.
func NewHostRegion(base, size uint64) (*Region, error) {
	words := make([]uint64, size/8)
	if len(words) == 0 {
		return nil, fmt.Errorf("ept: region size %#x too small", size)
	}
	return NewRegion(base, unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8))
}

// Base returns the region's first host-physical address.
func (r *Region) Base() uint64 { return r.base }

// End returns the host-physical address just past the region.
func (r *Region) End() uint64 { return r.base + uint64(len(r.mem)) }

// AllocTable implements PhysMem.AllocTable.
func (r *Region) AllocTable() (uint64, error) {
	if n := len(r.free); n > 0 {
		pa := r.free[n-1]
		r.free = r.free[:n-1]
		clear(r.Table(pa)[:])
		return pa, nil
	}
	if r.high-r.low < PageSize {
		return 0, fmt.Errorf("ept: table frame: %w", ErrNoMemory)
	}
	r.high -= PageSize
	t := r.Table(r.high)
	clear(t[:])
	return r.high, nil
}

// FreeTable implements PhysMem.FreeTable.
func (r *Region) FreeTable(pa uint64) { r.free = append(r.free, pa) }

// Table implements PhysMem.Table. It panics on an address that is not a
// table frame of this region: that is a broken invariant, never an input.
func (r *Region) Table(pa uint64) *[512]uint64 {
	if pa < r.high || pa >= r.End() || pa%PageSize != 0 {
		panic(fmt.Sprintf("ept: %#x is not a table frame of region [%#x, %#x)", pa, r.high, r.End()))
	}
	return (*[512]uint64)(unsafe.Pointer(&r.mem[pa-r.base]))
}

// AllocGuestRAM sets aside size bytes of guest RAM aligned to align (a power
// of two, at least 4 KiB) and returns its host-physical address.
func (r *Region) AllocGuestRAM(size, align uint64) (uint64, error) {
	if size == 0 || size%PageSize != 0 || align < PageSize || align&(align-1) != 0 {
		return 0, fmt.Errorf("ept: guest RAM size %#x align %#x invalid", size, align)
	}
	start := (r.low + align - 1) &^ (align - 1)
	if start < r.low || start > r.high || r.high-start < size {
		return 0, fmt.Errorf("ept: guest RAM of %d MiB: %w", size>>20, ErrNoMemory)
	}
	r.low = start + size
	r.spans = append(r.spans, span{start, start + size})
	return start, nil
}

// CheckBacking implements PhysMem.CheckBacking.
func (r *Region) CheckBacking(hpa, size uint64) error {
	end := hpa + size
	if end < hpa {
		return fmt.Errorf("ept: host range %#x+%#x wraps", hpa, size)
	}
	for _, s := range r.spans {
		if hpa >= s.start && end <= s.end {
			return nil
		}
	}
	return fmt.Errorf("ept: host range [%#x, %#x) is not guest RAM of the reserved region", hpa, end)
}

// Bytes returns the region's memory at [hpa, hpa+size), which must be guest
// RAM: the loader copies images there, tests play the guest there.
func (r *Region) Bytes(hpa, size uint64) ([]byte, error) {
	if err := r.CheckBacking(hpa, size); err != nil {
		return nil, err
	}
	return r.mem[hpa-r.base : hpa-r.base+size], nil
}

// TableFrames returns the host range holding table frames, for isolation
// checks: [lo, End()).
func (r *Region) TableFrames() (lo, hi uint64) { return r.high, r.End() }
