package virtionet

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/doppel-ft/doppel/nic/dma"
)

// Split virtqueue layout (2.7): descriptor table (16 bytes a descriptor,
// 16-byte aligned), driver ("available") ring (flags, idx, ring[size],
// used_event; 2-byte aligned), device ("used") ring (flags, idx,
// {id, len}[size], avail_event; 4-byte aligned).
const (
	descSize      = 16
	usedElemSize  = 8
	ringHeaderLen = 4
)

// queue is one split virtqueue with one buffer of bufSize per descriptor.
// Descriptor i always points at buffer i. It is not safe for concurrent
// use: the driver locks around it.
type queue struct {
	size               uint16
	desc, avail, used  dma.Buffer
	bufs               dma.Buffer
	bufSize            int
	availIdx, lastUsed uint16
	free               []uint16 // descriptors the driver owns
}

func newQueue(mem *dma.Region, size uint16, bufSize int) (*queue, error) {
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("virtio-net: queue size %d is not a power of 2", size)
	}
	q := &queue{size: size, bufSize: bufSize}
	n := uint64(size)
	var err error
	if q.desc, err = mem.Alloc(n*descSize, 4096); err != nil {
		return nil, err
	}
	if q.avail, err = mem.Alloc(ringHeaderLen+2*n+2, 64); err != nil {
		q.release(mem)
		return nil, err
	}
	if q.used, err = mem.Alloc(ringHeaderLen+usedElemSize*n+2, 64); err != nil {
		q.release(mem)
		return nil, err
	}
	if q.bufs, err = mem.Alloc(n*uint64(bufSize), 4096); err != nil {
		q.release(mem)
		return nil, err
	}
	for i := uint16(0); i < size; i++ {
		binary.LittleEndian.PutUint64(q.desc.Mem[int(i)*descSize:], q.bufs.PA+uint64(i)*uint64(bufSize))
		q.free = append(q.free, size-1-i)
	}
	return q, nil
}

func (q *queue) release(mem *dma.Region) {
	for _, b := range []dma.Buffer{q.desc, q.avail, q.used, q.bufs} {
		if b.Mem != nil {
			mem.Free(b)
		}
	}
}

// buf returns descriptor i's buffer.
func (q *queue) buf(i uint16) []byte {
	o := int(i) * q.bufSize
	return q.bufs.Mem[o : o+q.bufSize]
}

// post hands descriptor i, with length n and flags, to the device: it
// goes into the next driver-ring slot, then the ring index moves (2.7.13:
// the index store must follow the slot store; x86 keeps stores in order
// and the atomic store keeps the compiler from reordering them).
func (q *queue) post(i uint16, n int, flags uint16) {
	d := q.desc.Mem[int(i)*descSize:]
	binary.LittleEndian.PutUint32(d[8:], uint32(n))
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], 0)
	binary.LittleEndian.PutUint16(q.avail.Mem[ringHeaderLen+2*int(q.availIdx%q.size):], i)
	q.availIdx++
	atomic.StoreUint32(ringWord(q.avail.Mem), uint32(q.availIdx)<<16)
}

// ringWord is the first dword of a ring: flags in the low half, idx in
// the high half (little endian).
func ringWord(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[0])) }

// usedIdx returns the device's used index.
func (q *queue) usedIdx() uint16 { return uint16(atomic.LoadUint32(ringWord(q.used.Mem)) >> 16) }

// deviceWantsNotify reports whether the device asked for notifications
// (the used ring's NO_NOTIFY flag clear, 2.7.10).
func (q *queue) deviceWantsNotify() bool {
	return atomic.LoadUint32(ringWord(q.used.Mem))&UsedFNoNotify == 0
}

// nextUsed returns the next element the device has put in the used ring.
func (q *queue) nextUsed() (id uint16, n uint32, ok bool) {
	if q.lastUsed == q.usedIdx() {
		return 0, 0, false
	}
	e := q.used.Mem[ringHeaderLen+usedElemSize*int(q.lastUsed%q.size):]
	q.lastUsed++
	return uint16(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint32(e[4:]), true
}

// take returns a free descriptor, if any.
func (q *queue) take() (uint16, bool) {
	if len(q.free) == 0 {
		return 0, false
	}
	i := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	return i, true
}
