// Package dma hands out physically contiguous memory that devices read and
// write (NIC descriptor rings and frame buffers). It manages one range of
// host-physical memory, the DMA slice of doppel's reserved region
// (board.SplitReserved), mapped through /dev/mem; the EPT and guest side
// never see that slice. Structures in it hold physical addresses, never Go
// pointers (STYLE.md, rule 8).
package dma

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"unsafe"
)

// ErrNoMemory is returned when no free block is large enough.
var ErrNoMemory = errors.New("dma: region exhausted")

// Buffer is one allocation: its physical address and its mapping.
type Buffer struct {
	PA  uint64
	Mem []byte
}

// Region is a first-fit allocator over [base, base+len(mem)). It is safe
// for concurrent use.
type Region struct {
	mu   sync.Mutex
	base uint64
	mem  []byte
	free []block // sorted by start, coalesced
}

type block struct{ start, end uint64 } // physical, [start, end)

// New manages mem, the mapping of host-physical [base, base+len(mem)).
// base must be 4 KiB aligned and mem non-empty.
func New(base uint64, mem []byte) (*Region, error) {
	if base%4096 != 0 || len(mem) == 0 {
		return nil, fmt.Errorf("dma: region %#x+%#x: want a non-empty range at a 4 KiB boundary", base, len(mem))
	}
	return &Region{base: base, mem: mem, free: []block{{base, base + uint64(len(mem))}}}, nil
}

// NewHost backs a region at the pretend physical address base with Go
// memory, for host tests of the drivers against device models.
func NewHost(base, size uint64) (*Region, error) {
	words := make([]uint64, (size+7)/8)
	if len(words) == 0 {
		return nil, fmt.Errorf("dma: host region of size %d", size)
	}
	return New(base, unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size))
}

// Base returns the first physical address of the region.
func (r *Region) Base() uint64 { return r.base }

// Size returns the region's length in bytes.
func (r *Region) Size() uint64 { return uint64(len(r.mem)) }

// Alloc returns size zeroed bytes at a physical address that is a multiple
// of align (a power of two; 0 means 64, a cache line).
func (r *Region) Alloc(size, align uint64) (Buffer, error) {
	if align == 0 {
		align = 64
	}
	if size == 0 || align&(align-1) != 0 {
		return Buffer{}, fmt.Errorf("dma: alloc %d bytes aligned %d: bad request", size, align)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range r.free {
		start := (b.start + align - 1) &^ (align - 1)
		if start+size > b.end || start+size < start {
			continue
		}
		r.take(i, start, start+size)
		buf := Buffer{PA: start, Mem: r.mem[start-r.base : start-r.base+size : start-r.base+size]}
		clear(buf.Mem)
		return buf, nil
	}
	return Buffer{}, fmt.Errorf("dma: alloc %d bytes aligned %d: %w", size, align, ErrNoMemory)
}

// take removes [start, end) from free block i, keeping what is left on
// either side.
func (r *Region) take(i int, start, end uint64) {
	b := r.free[i]
	var keep []block
	if b.start < start {
		keep = append(keep, block{b.start, start})
	}
	if end < b.end {
		keep = append(keep, block{end, b.end})
	}
	r.free = append(r.free[:i], append(keep, r.free[i+1:]...)...)
}

// Free returns a buffer from Alloc. Freeing memory that is not allocated
// is an error and changes nothing.
func (r *Region) Free(b Buffer) error {
	start, end := b.PA, b.PA+uint64(len(b.Mem))
	r.mu.Lock()
	defer r.mu.Unlock()
	if start < r.base || end > r.base+uint64(len(r.mem)) || end <= start {
		return fmt.Errorf("dma: free %#x+%#x: outside the region", start, len(b.Mem))
	}
	i := sort.Search(len(r.free), func(i int) bool { return r.free[i].start >= start })
	if (i < len(r.free) && r.free[i].start < end) || (i > 0 && r.free[i-1].end > start) {
		return fmt.Errorf("dma: free %#x+%#x: not allocated", start, len(b.Mem))
	}
	r.free = append(r.free[:i], append([]block{{start, end}}, r.free[i:]...)...)
	if i+1 < len(r.free) && r.free[i].end == r.free[i+1].start {
		r.free[i].end = r.free[i+1].end
		r.free = append(r.free[:i+1], r.free[i+2:]...)
	}
	if i > 0 && r.free[i-1].end == r.free[i].start {
		r.free[i-1].end = r.free[i].end
		r.free = append(r.free[:i], r.free[i+1:]...)
	}
	return nil
}

// FreeBytes returns the bytes not allocated.
func (r *Region) FreeBytes() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n uint64
	for _, b := range r.free {
		n += b.end - b.start
	}
	return n
}

// Slice returns the mapping of physical [pa, pa+n), which must lie in the
// region: device models in tests use it to follow descriptor addresses.
func (r *Region) Slice(pa, n uint64) ([]byte, error) {
	if pa < r.base || pa+n > r.base+uint64(len(r.mem)) || pa+n < pa {
		return nil, fmt.Errorf("dma: %#x+%#x outside the region %#x+%#x", pa, n, r.base, len(r.mem))
	}
	o := pa - r.base
	return r.mem[o : o+n : o+n], nil
}
