package pci

import (
	"fmt"
	"strings"
)

// Configuration header offsets (PCI 3.0 sec. 6.1, figure 6-1; type 1:
// PCI-to-PCI Bridge 1.2 sec. 3.2).
const (
	VendorID      = 0x00
	DeviceID      = 0x02
	Command       = 0x04
	Status        = 0x06
	RevisionID    = 0x08
	ClassCode     = 0x09 // programming interface, subclass, base class (3 bytes)
	HeaderType    = 0x0E
	BAR0          = 0x10
	SecondaryBus  = 0x19 // type 1 header
	CapPointer    = 0x34
	InterruptLine = 0x3C
	InterruptPin  = 0x3D

	headerMultiFunction = 0x80
	headerTypeMask      = 0x7F
	headerBridge        = 1
)

// Command register bits (PCI 3.0 sec. 6.2.2).
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandBusMaster   = 1 << 2
	CommandINTxDisable = 1 << 10
)

// Status register bits.
const StatusCapList = 1 << 4

// Capability IDs (PCI Code and ID Assignment Specification 1.11, sec. 2).
const (
	CapMSI    = 0x05
	CapVendor = 0x09
	CapPCIe   = 0x10
	CapMSIX   = 0x11
)

// BAR bits (PCI 3.0 sec. 6.2.5.1).
const (
	barIO       = 1 << 0
	barType64   = 2 << 1
	barTypeMask = 3 << 1
	barPrefetch = 1 << 3
)

// BAR is one decoded base address register.
type BAR struct {
	Index    int
	IO       bool // I/O space, else memory
	Is64     bool // a 64-bit memory BAR (takes two registers)
	Prefetch bool
	Addr     uint64
	Size     uint64
}

func (b BAR) String() string {
	kind := "mem32"
	switch {
	case b.IO:
		kind = "io"
	case b.Is64:
		kind = "mem64"
	}
	if b.Prefetch {
		kind += ",pf"
	}
	return fmt.Sprintf("bar%d %s %#x+%s", b.Index, kind, b.Addr, sizeString(b.Size))
}

func sizeString(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}

// Capability is one entry of the capability list.
type Capability struct {
	ID     uint8
	Offset uint16
}

// Device is one PCI function as enumeration found it.
type Device struct {
	Addr
	Vendor, Device uint16
	Class          uint32 // base class<<16 | subclass<<8 | programming interface
	Revision       uint8
	Header         uint8 // header type without the multi-function bit
	BARs           []BAR
	Caps           []Capability
	IRQLine        uint8 // as the firmware routed INTx (ISA IRQ / GSI); 0xFF none
	IRQPin         uint8 // 1-4 = INTA-INTD, 0 none
}

// Cap returns the offset of the first capability with id, if any.
func (d *Device) Cap(id uint8) (uint16, bool) {
	for _, c := range d.Caps {
		if c.ID == id {
			return c.Offset, true
		}
	}
	return 0, false
}

// CapsOf returns the offsets of every capability with id.
func (d *Device) CapsOf(id uint8) []uint16 {
	var out []uint16
	for _, c := range d.Caps {
		if c.ID == id {
			out = append(out, c.Offset)
		}
	}
	return out
}

// BAR returns BAR i, if the device has it.
func (d *Device) BAR(i int) (BAR, bool) {
	for _, b := range d.BARs {
		if b.Index == i {
			return b, true
		}
	}
	return BAR{}, false
}

// Interrupts names what the device can signal: MSI-X, MSI, INTx.
func (d *Device) Interrupts() string {
	var s []string
	if _, ok := d.Cap(CapMSIX); ok {
		s = append(s, "msi-x")
	}
	if _, ok := d.Cap(CapMSI); ok {
		s = append(s, "msi")
	}
	if d.IRQPin >= 1 && d.IRQPin <= 4 {
		s = append(s, fmt.Sprintf("INT%c irq %d", 'A'+d.IRQPin-1, d.IRQLine))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

func (d *Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %04x:%04x class %06x %s", d.Addr, d.Vendor, d.Device, d.Class, d.Name())
	fmt.Fprintf(&b, " irq:%s", d.Interrupts())
	for _, bar := range d.BARs {
		fmt.Fprintf(&b, " %v", bar)
	}
	if len(d.Caps) > 0 {
		b.WriteString(" caps:")
		for i, c := range d.Caps {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%02x@%02x", c.ID, c.Offset)
		}
	}
	return b.String()
}

// Name is a short description: a known device's name, else its class.
func (d *Device) Name() string {
	if n, ok := knownDevices[uint32(d.Vendor)<<16|uint32(d.Device)]; ok {
		return n
	}
	if n, ok := classNames[d.Class>>8]; ok {
		return n
	}
	return "device"
}

var knownDevices = map[uint32]string{
	0x8086100E: "e1000 (82540EM)",
	0x80861237: "440FX host bridge",
	0x80867000: "PIIX3 ISA bridge",
	0x80867010: "PIIX3 IDE",
	0x80867113: "PIIX4 ACPI",
	0x808629C0: "Q35 host bridge",
	0x1AF41000: "virtio-net (transitional)",
	0x1AF41041: "virtio-net (modern)",
	0x12341111: "VGA",
}

var classNames = map[uint32]string{
	0x0100: "SCSI", 0x0101: "IDE", 0x0106: "SATA", 0x0108: "NVMe",
	0x0200: "Ethernet", 0x0300: "VGA",
	0x0600: "host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge", 0x0680: "bridge",
	0x0C03: "USB", 0x0C05: "SMBus",
}
