package e1000

import (
	"sync/atomic"
	"unsafe"
)

// atomicLoad8 reads a descriptor byte the device writes by DMA. x86 keeps
// DMA coherent with the caches; the atomic load of the aligned dword
// around it keeps the compiler from caching the byte across loop
// iterations and orders the reads of the rest of the descriptor after it.
// Descriptors are 16-byte aligned, so the dword is too.
func atomicLoad8(p *byte) byte {
	off := uintptr(unsafe.Pointer(p)) & 3
	w := atomic.LoadUint32((*uint32)(unsafe.Add(unsafe.Pointer(p), -int(off))))
	return byte(w >> (8 * off))
}
