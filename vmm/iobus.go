package vmm

import (
	"fmt"
	"sort"
	"sync"
)

// PortDevice is a device on the guest's I/O port bus. Offsets are relative
// to the base the device was added at; size is 1, 2 or 4 bytes.
type PortDevice interface {
	PortIn(offset uint16, size int) uint32
	PortOut(offset uint16, size int, value uint32)
}

// IOBus maps guest I/O ports to devices over ranges that do not overlap.
type IOBus struct {
	ranges []portRange // sorted by base
	// Unclaimed counts accesses to ports no device claims: reads return
	// all ones, writes are dropped.
	Unclaimed uint64
	// Lock, if set, is held around every device access (the machine's
	// device lock, shared with the MMIO bus and the timers).
	Lock sync.Locker
}

type portRange struct {
	base, end uint32 // [base, end)
	dev       PortDevice
	name      string
}

// Add maps dev at ports [base, base+n).
func (b *IOBus) Add(name string, base uint16, n int, dev PortDevice) error {
	r := portRange{base: uint32(base), end: uint32(base) + uint32(n), dev: dev, name: name}
	if n <= 0 || r.end > 0x10000 {
		return fmt.Errorf("vmm: io bus: %s: bad range %#x+%d", name, base, n)
	}
	for _, o := range b.ranges {
		if r.base < o.end && o.base < r.end {
			return fmt.Errorf("vmm: io bus: %s [%#x, %#x) overlaps %s [%#x, %#x)", name, r.base, r.end, o.name, o.base, o.end)
		}
	}
	b.ranges = append(b.ranges, r)
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

func (b *IOBus) find(port uint16) *portRange {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].end > uint32(port) })
	if i < len(b.ranges) && b.ranges[i].base <= uint32(port) {
		return &b.ranges[i]
	}
	return nil
}

// In reads size bytes from port.
func (b *IOBus) In(port uint16, size int) uint32 {
	if b.Lock != nil {
		b.Lock.Lock()
		defer b.Lock.Unlock()
	}
	if r := b.find(port); r != nil {
		return r.dev.PortIn(port-uint16(r.base), size)
	}
	b.Unclaimed++
	return ^uint32(0) >> (32 - 8*size)
}

// Out writes size bytes of value to port.
func (b *IOBus) Out(port uint16, size int, value uint32) {
	if b.Lock != nil {
		b.Lock.Lock()
		defer b.Lock.Unlock()
	}
	if r := b.find(port); r != nil {
		r.dev.PortOut(port-uint16(r.base), size, value&(^uint32(0)>>(32-8*size)))
		return
	}
	b.Unclaimed++
}
