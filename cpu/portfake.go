package cpu

import (
	"fmt"
	"sync"
)

// PortAccess is one I/O-port access recorded by a PortFake.
type PortAccess struct {
	Write bool   // OUT if true, IN if false
	Port  uint16 // I/O port address
	Size  int    // access width in bytes: 1, 2 or 4
	Value uint32 // value written, or value returned to the reader
}

func (a PortAccess) String() string {
	dir := "in"
	if a.Write {
		dir = "out"
	}
	return fmt.Sprintf("%s%d %#04x %#x", dir, a.Size*8, a.Port, a.Value)
}

// PortFake is a Ports for host tests of device code. Reads are answered by
// the Read function (all ones, like a floating ISA bus, when it is nil);
// writes are passed to the Write function when it is set. Every access is
// recorded in order. It is safe for concurrent use.
type PortFake struct {
	Read  func(port uint16, size int) uint32
	Write func(port uint16, size int, value uint32)

	mu  sync.Mutex
	log []PortAccess
}

// Accesses returns a copy of every access so far, oldest first.
func (f *PortFake) Accesses() []PortAccess {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PortAccess(nil), f.log...)
}

func (f *PortFake) in(port uint16, size int) uint32 {
	mask := uint32(1)<<(8*size) - 1
	if size == 4 {
		mask = ^uint32(0)
	}
	value := mask
	if f.Read != nil {
		value = f.Read(port, size) & mask
	}
	f.record(PortAccess{Port: port, Size: size, Value: value})
	return value
}

func (f *PortFake) out(port uint16, size int, value uint32) {
	f.record(PortAccess{Write: true, Port: port, Size: size, Value: value})
	if f.Write != nil {
		f.Write(port, size, value)
	}
}

func (f *PortFake) record(a PortAccess) {
	f.mu.Lock()
	f.log = append(f.log, a)
	f.mu.Unlock()
}

func (f *PortFake) In8(port uint16) uint8           { return uint8(f.in(port, 1)) }
func (f *PortFake) Out8(port uint16, value uint8)   { f.out(port, 1, uint32(value)) }
func (f *PortFake) In16(port uint16) uint16         { return uint16(f.in(port, 2)) }
func (f *PortFake) Out16(port uint16, value uint16) { f.out(port, 2, uint32(value)) }
func (f *PortFake) In32(port uint16) uint32         { return f.in(port, 4) }
func (f *PortFake) Out32(port uint16, value uint32) { f.out(port, 4, value) }
