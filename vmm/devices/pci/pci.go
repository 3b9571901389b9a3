// Package pci is a PCI bus 0 reached through configuration mechanism #1
// (I/O ports 0xCF8 address, 0xCFC-0xCFF data), with a host bridge at
// 00:00.0 and a Function interface that device models (virtio-net, ...)
// implement, helped by Config, a type-0 configuration header with BARs.
//
// Reference: PCI Local Bus Specification 3.0: 3.2.2.3.2 "Software
// Generation of Configuration Transactions" (CONFIG_ADDRESS layout: bit
// 31 enable, bus 23:16, device 15:11, function 10:8, register 7:2; only
// dword accesses to 0xCF8 reach CONFIG_ADDRESS, other sizes pass through
// as ordinary I/O), 6.1 (configuration space header, reads of absent
// functions return all ones: "Master Abort"), 6.2.5 (base address
// registers and how software sizes them by writing all ones), 6.2.4 and
// 2.2.6 (Interrupt Pin and INTx, shared and level-triggered), 6.7
// (capabilities list). The host bridge is the Intel 440FX PMC (82441FX
// datasheet 290549: vendor 8086h, device 1237h, revision 02h, class
// 060000h), the one QEMU's "pc" machine shows.
//
// Interrupts: INTx pins are routed by the usual swizzle to the four PIRQ
// lines the machine gives NewBus (PIRQ = (device + pin - 1) mod 4); a
// PIRQ line is the OR of every function's INTx level on it, so sharing
// works with level triggering.
//
// # Saved state
//
// Bus.Save writes kind "PCIB" version 1: CONFIG_ADDRESS (u32), the
// number of functions (u32), then per function in device, function
// order: device (u8), function (u8), that function's own saved state
// (bytes). Config.Save writes kind "PCIF" version 1: the 256 bytes of
// configuration space (bytes) and the INTx level (bool); its Restore
// refuses a blob whose read-only bytes differ from the device's (another
// device or configuration).
package pci

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Ports of configuration mechanism #1.
const (
	ConfigPort = 0xCF8 // CONFIG_ADDRESS at offset 0, CONFIG_DATA at 4-7
	ConfigSize = 8
)

// CONFIG_ADDRESS fields.
const (
	AddrEnable   = 1 << 31
	addrBusShift = 16
	addrDevShift = 11
	addrFnShift  = 8
	addrMask     = 0x80FFFFFC // reserved bits 30:24 and 1:0 read 0
)

// Limits of bus 0.
const (
	NumDevices   = 32
	NumFunctions = 8
	ConfigBytes  = 256
)

// Function is one PCI function's configuration space. offset is the
// byte offset (0-255), size 1, 2 or 4 with offset+size within the same
// dword; values are little-endian. Its Save/Restore covers its whole
// guest-visible state (the configuration space at least).
type Function interface {
	ReadConfig(offset uint8, size int) uint32
	WriteConfig(offset uint8, size int, value uint32)
	devices.Snapshotter
}

// INTxUser is a Function with an interrupt pin: the bus gives it the
// PIRQ line its pin is routed to when it is added.
type INTxUser interface {
	Function
	InterruptPin() uint8 // 1-4 for INTA#-INTD#, 0 for none
	ConnectINTx(l devices.Line)
}

// Bus is PCI bus 0 with its configuration ports. Not safe for concurrent
// use.
type Bus struct {
	fns   [NumDevices][NumFunctions]Function
	addr  uint32
	pirqs [4]*orLine
	// CF9 receives byte accesses to port 0xCF9, which shares the dword of
	// CONFIG_ADDRESS: the reset control register (package reset). Nil for
	// none.
	CF9 devices.PortDevice
}

// NewBus returns a bus with the host bridge at 00:00.0 and INTx routed to
// the four PIRQ lines (A-D).
func NewBus(pirqs [4]devices.Line) *Bus {
	b := &Bus{}
	for i := range b.pirqs {
		b.pirqs[i] = &orLine{out: pirqs[i]}
	}
	if err := b.Add(0, 0, NewHostBridge()); err != nil {
		panic(err) // cannot happen on an empty bus
	}
	return b
}

// Swizzle returns the PIRQ (0-3 for A-D) of device's INTx pin (1-4).
func Swizzle(device, pin int) int { return (device + pin - 1) % 4 }

// Add puts f at device:function, connecting its INTx pin if it has one.
func (b *Bus) Add(device, function int, f Function) error {
	if device < 0 || device >= NumDevices || function < 0 || function >= NumFunctions {
		return fmt.Errorf("pci: %02x.%d: no such slot", device, function)
	}
	if b.fns[device][function] != nil {
		return fmt.Errorf("pci: %02x.%d: slot taken", device, function)
	}
	b.fns[device][function] = f
	if u, ok := f.(INTxUser); ok {
		if pin := int(u.InterruptPin()); pin >= 1 && pin <= 4 {
			u.ConnectINTx(b.pirqs[Swizzle(device, pin)].source())
		}
	}
	return nil
}

// Function returns the function at device:function, nil if none.
func (b *Bus) Function(device, function int) Function { return b.fns[device][function] }

// target decodes CONFIG_ADDRESS: the function addressed and its register.
func (b *Bus) target() (Function, int, uint8) {
	a := b.addr
	if a&AddrEnable == 0 || (a>>addrBusShift)&0xFF != 0 {
		return nil, 0, 0
	}
	dev, fn := (a>>addrDevShift)&0x1F, (a>>addrFnShift)&7
	return b.fns[dev][fn], int(dev), uint8(a)
}

// PortIn implements devices.PortDevice at ConfigPort.
func (b *Bus) PortIn(offset uint16, size int) uint32 {
	ones := uint32(1<<(8*size) - 1)
	switch {
	case offset == 0 && size == 4:
		return b.addr
	case offset < 4:
		if offset == 1 && size == 1 && b.CF9 != nil {
			return b.CF9.PortIn(0, 1)
		}
		return ones
	case int(offset&3)+size > 4:
		return ones // crosses the dword
	}
	f, dev, reg := b.target()
	if f == nil {
		return ones // master abort
	}
	off := reg + uint8(offset&3)
	v := f.ReadConfig(off, size)
	if reg>>2 == HeaderTypeOffset>>2 && uint8(b.addr>>addrFnShift)&7 == 0 && b.multi(dev) {
		if sh := 8 * (HeaderTypeOffset - int(off)); sh >= 0 && sh < 8*size {
			v |= HeaderMultiFunction << sh
		}
	}
	return v
}

func (b *Bus) multi(dev int) bool {
	for fn := 1; fn < NumFunctions; fn++ {
		if b.fns[dev][fn] != nil {
			return true
		}
	}
	return false
}

// PortOut implements devices.PortDevice at ConfigPort.
func (b *Bus) PortOut(offset uint16, size int, value uint32) {
	switch {
	case offset == 0 && size == 4:
		b.addr = value & addrMask
		return
	case offset < 4:
		if offset == 1 && size == 1 && b.CF9 != nil {
			b.CF9.PortOut(0, 1, value)
		}
		return
	case int(offset&3)+size > 4:
		return
	}
	if f, _, reg := b.target(); f != nil {
		f.WriteConfig(reg+uint8(offset&3), size, value)
	}
}

// orLine is a PIRQ line: the OR of its sources' levels.
type orLine struct {
	out    devices.Line
	levels []bool
	high   bool
}

type orSource struct {
	l *orLine
	i int
}

func (l *orLine) source() devices.Line {
	l.levels = append(l.levels, false)
	return orSource{l, len(l.levels) - 1}
}

func (s orSource) Set(high bool) {
	l := s.l
	l.levels[s.i] = high
	any := false
	for _, v := range l.levels {
		any = any || v
	}
	if any != l.high {
		l.high = any
		l.out.Set(any)
	}
}
