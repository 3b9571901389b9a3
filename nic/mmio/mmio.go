// Package mmio is register access for the NIC drivers: a Space is a
// device's register window (a memory BAR mapped uncached through
// /dev/mem on bare metal, a device model in host tests). Each access is a
// single load or store of its width, as MMIO requires.
package mmio

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Space is a register window addressed by byte offset.
type Space interface {
	Read8(off uint32) uint8
	Read16(off uint32) uint16
	Read32(off uint32) uint32
	Write8(off uint32, v uint8)
	Write16(off uint32, v uint16)
	Write32(off uint32, v uint32)
}

// Mem is a Space over a mapping of the registers. The layer maps non-RAM
// physical pages with PCD|PWT (uncached), so loads and stores reach the
// device in program order; the 32-bit accesses are atomic operations,
// which the Go compiler emits as one MOV (XCHG for the store, a full
// barrier, so descriptor writes before a tail update are visible first).
type Mem []byte

func (m Mem) p(off uint32, size uint32) unsafe.Pointer {
	if uint64(off)+uint64(size) > uint64(len(m)) || off%size != 0 {
		panic(fmt.Sprintf("mmio: access %#x/%d outside the %#x-byte window", off, size, len(m)))
	}
	return unsafe.Pointer(&m[off])
}

func (m Mem) Read8(off uint32) uint8   { return *(*uint8)(m.p(off, 1)) }
func (m Mem) Read16(off uint32) uint16 { return *(*uint16)(m.p(off, 2)) }
func (m Mem) Read32(off uint32) uint32 { return atomic.LoadUint32((*uint32)(m.p(off, 4))) }
func (m Mem) Write8(off uint32, v uint8) {
	*(*uint8)(m.p(off, 1)) = v
}
func (m Mem) Write16(off uint32, v uint16) {
	*(*uint16)(m.p(off, 2)) = v
}
func (m Mem) Write32(off uint32, v uint32) { atomic.StoreUint32((*uint32)(m.p(off, 4)), v) }
