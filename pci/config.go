// Package pci is doppel's host-side PCI: it reads the configuration space
// of the machine doppel runs on (configuration mechanism #1 through ports
// 0xCF8/0xCFC, or ECAM from the ACPI MCFG table where present), enumerates
// the buses behind the host bridge and its PCI-to-PCI bridges, sizes the
// BARs, walks the capability lists (MSI, MSI-X, vendor-specific) and
// enables the devices doppel drives as a bus master.
//
// References: PCI Local Bus Specification 3.0 (sec. 3.2.2.3.2
// configuration mechanism #1, sec. 6.1 configuration header, 6.2.5 BARs,
// 6.7 capabilities list, 6.8 MSI), PCI-to-PCI Bridge Architecture
// Specification 1.2 (sec. 3.2 type 1 header), PCI Express Base 4.0
// (sec. 7.2.2 ECAM), PCI Firmware Specification 3.2 (sec. 4.1.2 MCFG).
//
// This is not the guest's virtual PCI bus (vmm/devices/pci): that one is a
// device model doppel shows its guest; this one drives real hardware.
package pci

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/doppel-ft/doppel/cpu"
)

// Addr is a function's bus/device/function address.
type Addr struct {
	Bus     uint8
	Dev, Fn uint8 // device 0-31, function 0-7
	Segment uint16
}

func (a Addr) String() string {
	if a.Segment != 0 {
		return fmt.Sprintf("%04x:%02x:%02x.%d", a.Segment, a.Bus, a.Dev, a.Fn)
	}
	return fmt.Sprintf("%02x:%02x.%d", a.Bus, a.Dev, a.Fn)
}

// Config is access to configuration space. Offsets are bytes into the
// function's header; size is 1, 2 or 4 and offset must be size-aligned.
type Config interface {
	Read(a Addr, off uint16, size int) uint32
	Write(a Addr, off uint16, size int, v uint32)
}

// Read8, Read16, Read32 and Write16, Write32 are sized shorthands.
func Read8(c Config, a Addr, off uint16) uint8       { return uint8(c.Read(a, off, 1)) }
func Read16(c Config, a Addr, off uint16) uint16     { return uint16(c.Read(a, off, 2)) }
func Read32(c Config, a Addr, off uint16) uint32     { return c.Read(a, off, 4) }
func Write16(c Config, a Addr, off uint16, v uint16) { c.Write(a, off, 2, uint32(v)) }
func Write32(c Config, a Addr, off uint16, v uint32) { c.Write(a, off, 4, v) }

// Configuration mechanism #1 (PCI 3.0 sec. 3.2.2.3.2).
const (
	ConfigAddress = 0xCF8 // CONFIG_ADDRESS: enable<<31 | bus<<16 | dev<<11 | fn<<8 | reg
	ConfigData    = 0xCFC // CONFIG_DATA: the dword CONFIG_ADDRESS selects
	configEnable  = 1 << 31
)

// Mechanism1 reaches the first 256 bytes of each function's configuration
// space through the two ports. The address/data pair is one shared latch,
// so accesses are serialized.
type Mechanism1 struct {
	Ports cpu.Ports
	mu    sync.Mutex
}

func (m *Mechanism1) sel(a Addr, off uint16) {
	m.Ports.Out32(ConfigAddress, configEnable|uint32(a.Bus)<<16|uint32(a.Dev&31)<<11|uint32(a.Fn&7)<<8|uint32(off&0xFC))
}

// Read implements Config.
func (m *Mechanism1) Read(a Addr, off uint16, size int) uint32 {
	if off >= 256 || a.Segment != 0 {
		return ^uint32(0)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sel(a, off)
	port := uint16(ConfigData) + off&3
	switch size {
	case 1:
		return uint32(m.Ports.In8(port))
	case 2:
		return uint32(m.Ports.In16(port))
	}
	return m.Ports.In32(ConfigData)
}

// Write implements Config.
func (m *Mechanism1) Write(a Addr, off uint16, size int, v uint32) {
	if off >= 256 || a.Segment != 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sel(a, off)
	port := uint16(ConfigData) + off&3
	switch size {
	case 1:
		m.Ports.Out8(port, uint8(v))
	case 2:
		m.Ports.Out16(port, uint16(v))
	default:
		m.Ports.Out32(ConfigData, v)
	}
}

// ECAM is the memory-mapped configuration space of one MCFG entry (PCIe
// 4.0 sec. 7.2.2): 4 KiB per function at base + bus<<20 | dev<<15 | fn<<12.
// Mem maps [Base + StartBus<<20, Base + (EndBus+1)<<20), uncached.
type ECAM struct {
	Segment          uint16
	StartBus, EndBus uint8
	Mem              []byte
}

func (e *ECAM) ptr(a Addr, off uint16, size int) unsafe.Pointer {
	if a.Segment != e.Segment || a.Bus < e.StartBus || a.Bus > e.EndBus || int(off)+size > 4096 {
		return nil
	}
	o := uint64(a.Bus-e.StartBus)<<20 | uint64(a.Dev&31)<<15 | uint64(a.Fn&7)<<12 | uint64(off)
	if o+uint64(size) > uint64(len(e.Mem)) {
		return nil
	}
	return unsafe.Pointer(&e.Mem[o])
}

// Read implements Config with one load of the access's size (MMIO needs
// the exact width).
func (e *ECAM) Read(a Addr, off uint16, size int) uint32 {
	p := e.ptr(a, off, size)
	if p == nil {
		return ^uint32(0)
	}
	switch size {
	case 1:
		return uint32(*(*uint8)(p))
	case 2:
		return uint32(*(*uint16)(p))
	}
	return atomic.LoadUint32((*uint32)(p))
}

// Write implements Config.
func (e *ECAM) Write(a Addr, off uint16, size int, v uint32) {
	p := e.ptr(a, off, size)
	if p == nil {
		return
	}
	switch size {
	case 1:
		*(*uint8)(p) = uint8(v)
	case 2:
		*(*uint16)(p) = uint16(v)
	default:
		atomic.StoreUint32((*uint32)(p), v)
	}
}
