package pci

import (
	"encoding/binary"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Type-0 header offsets (PCI 3.0, figure 6-1).
const (
	VendorIDOffset      = 0x00
	DeviceIDOffset      = 0x02
	CommandOffset       = 0x04
	StatusOffset        = 0x06
	RevisionOffset      = 0x08
	ClassOffset         = 0x09 // prog-if, subclass, class: 3 bytes
	CacheLineOffset     = 0x0C
	LatencyOffset       = 0x0D
	HeaderTypeOffset    = 0x0E
	BAR0Offset          = 0x10
	SubsysVendorOffset  = 0x2C
	SubsysIDOffset      = 0x2E
	CapabilitiesOffset  = 0x34
	InterruptLineOffset = 0x3C
	InterruptPinOffset  = 0x3D

	HeaderMultiFunction = 0x80
	NumBARs             = 6
	firstCapability     = 0x40
)

// Command register bits (6.2.2).
const (
	CommandIO           = 1 << 0
	CommandMemory       = 1 << 1
	CommandBusMaster    = 1 << 2
	CommandParity       = 1 << 6
	CommandSERR         = 1 << 8
	CommandINTxDisable  = 1 << 10
	commandWritable     = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
	StatusInterrupt     = 1 << 3
	StatusCapabilities  = 1 << 4
	barIO               = 1 << 0
	barMem64            = 2 << 1
	barPrefetch         = 1 << 3
	barIOFlagBits       = 2
	barMemFlagBits      = 4
	minIOBAR, minMemBAR = 4, 16
)

// BAR describes one base address register. A zero Size is an unused BAR.
// Size is a power of two (at least 4 for I/O, 16 for memory). A 64-bit
// BAR uses the next index as its upper half, which must be left unused.
type BAR struct {
	Size       uint64
	IO         bool
	Mem64      bool
	Prefetched bool
}

// Header is the fixed part of a type-0 configuration header.
type Header struct {
	VendorID, DeviceID   uint16
	Revision             uint8
	Class                uint32 // class << 16 | subclass << 8 | prog-if
	SubsysVendor, Subsys uint16
	InterruptPin         uint8 // 1-4 for INTA#-INTD#, 0 for none
	BARs                 [NumBARs]BAR
}

// Config is a function's type-0 configuration space: a byte array with a
// mask of guest-writable bits (which gives BAR sizing: writing all ones
// reads back the size mask), INTx with status bit 3 and the command
// register's INTx disable, and a read-only capabilities list. A device
// model embeds it (or wraps its methods to see writes). Not safe for
// concurrent use.
type Config struct {
	space   [ConfigBytes]byte
	wmask   [ConfigBytes]byte
	nextCap uint8
	lastCap uint8
	intx    devices.Line
	level   bool
	driven  bool
}

// NewConfig returns a configuration space for h. It fails on impossible
// BARs.
func NewConfig(h Header) (*Config, error) {
	c := &Config{intx: devices.NoLine, nextCap: firstCapability}
	s := c.space[:]
	binary.LittleEndian.PutUint16(s[VendorIDOffset:], h.VendorID)
	binary.LittleEndian.PutUint16(s[DeviceIDOffset:], h.DeviceID)
	s[RevisionOffset] = h.Revision
	s[ClassOffset], s[ClassOffset+1], s[ClassOffset+2] = byte(h.Class), byte(h.Class>>8), byte(h.Class>>16)
	binary.LittleEndian.PutUint16(s[SubsysVendorOffset:], h.SubsysVendor)
	binary.LittleEndian.PutUint16(s[SubsysIDOffset:], h.Subsys)
	if h.InterruptPin > 4 {
		return nil, fmt.Errorf("pci: interrupt pin %d", h.InterruptPin)
	}
	s[InterruptPinOffset] = h.InterruptPin
	binary.LittleEndian.PutUint16(c.wmask[CommandOffset:], commandWritable)
	c.wmask[CacheLineOffset], c.wmask[LatencyOffset] = 0xFF, 0xFF
	c.wmask[InterruptLineOffset] = 0xFF
	for i := 0; i < NumBARs; i++ {
		if err := c.setBAR(i, h.BARs); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Config) setBAR(i int, bars [NumBARs]BAR) error {
	b := bars[i]
	if b.Size == 0 {
		return nil
	}
	if b.Size&(b.Size-1) != 0 || b.IO && (b.Size < minIOBAR || b.Size > 1<<16 || b.Mem64 || b.Prefetched) ||
		!b.IO && b.Size < minMemBAR || !b.Mem64 && b.Size > 1<<31 {
		return fmt.Errorf("pci: BAR%d %+v: impossible", i, b)
	}
	if b.Mem64 && (i == NumBARs-1 || bars[i+1].Size != 0) {
		return fmt.Errorf("pci: BAR%d is 64-bit: BAR%d must be free", i, i+1)
	}
	if i > 0 && bars[i-1].Mem64 {
		return fmt.Errorf("pci: BAR%d is the upper half of BAR%d", i, i-1)
	}
	off := BAR0Offset + 4*i
	var flags uint32
	switch {
	case b.IO:
		flags = barIO
	case b.Mem64:
		flags = barMem64
	}
	if b.Prefetched {
		flags |= barPrefetch
	}
	mask := ^(b.Size - 1)
	binary.LittleEndian.PutUint32(c.space[off:], flags)
	lowFlags := uint32(1<<barMemFlagBits - 1)
	if b.IO {
		lowFlags = 1<<barIOFlagBits - 1
	}
	binary.LittleEndian.PutUint32(c.wmask[off:], uint32(mask)&^lowFlags)
	if b.Mem64 {
		binary.LittleEndian.PutUint32(c.wmask[off+4:], uint32(mask>>32))
	}
	return nil
}

// BARAddress returns the address BAR i holds (both halves of a 64-bit
// BAR), flag bits cleared.
func (c *Config) BARAddress(i int) uint64 {
	off := BAR0Offset + 4*i
	lo := binary.LittleEndian.Uint32(c.space[off:])
	if lo&barIO != 0 {
		return uint64(lo &^ (1<<barIOFlagBits - 1))
	}
	a := uint64(lo &^ (1<<barMemFlagBits - 1))
	if lo&(3<<1) == barMem64 && i+1 < NumBARs {
		a |= uint64(binary.LittleEndian.Uint32(c.space[off+4:])) << 32
	}
	return a
}

// Command returns the command register.
func (c *Config) Command() uint16 { return binary.LittleEndian.Uint16(c.space[CommandOffset:]) }

// SetInterruptLine sets the Interrupt Line register, as firmware does.
func (c *Config) SetInterruptLine(irq uint8) { c.space[InterruptLineOffset] = irq }

// AddCapability appends a read-only capability with the given ID and
// body (the bytes after the ID and next pointer) and returns its offset.
func (c *Config) AddCapability(id uint8, body []byte) (uint8, error) {
	n := 2 + len(body)
	n = (n + 3) &^ 3
	if int(c.nextCap)+n > ConfigBytes {
		return 0, fmt.Errorf("pci: capability %#x of %d bytes does not fit", id, len(body))
	}
	off := c.nextCap
	c.space[off] = id
	copy(c.space[int(off)+2:], body)
	if c.lastCap == 0 {
		c.space[CapabilitiesOffset] = off
		c.space[StatusOffset] |= StatusCapabilities
	} else {
		c.space[c.lastCap+1] = off
	}
	c.lastCap, c.nextCap = off, off+uint8(n)
	return off, nil
}

// InterruptPin implements INTxUser.
func (c *Config) InterruptPin() uint8 { return c.space[InterruptPinOffset] }

// ConnectINTx implements INTxUser.
func (c *Config) ConnectINTx(l devices.Line) {
	c.intx = l
	c.drive()
}

// SetINTx is the device's INTx level: it shows in status bit 3 and
// reaches the line unless the command register disables INTx.
func (c *Config) SetINTx(high bool) {
	c.level = high
	if high {
		c.space[StatusOffset] |= StatusInterrupt
	} else {
		c.space[StatusOffset] &^= StatusInterrupt
	}
	c.drive()
}

func (c *Config) drive() {
	out := c.level && c.Command()&CommandINTxDisable == 0
	if out != c.driven {
		c.driven = out
		c.intx.Set(out)
	}
}

// ReadConfig implements Function.
func (c *Config) ReadConfig(offset uint8, size int) uint32 {
	var v uint32
	for i := 0; i < size && int(offset)+i < ConfigBytes; i++ {
		v |= uint32(c.space[int(offset)+i]) << (8 * i)
	}
	return v
}

// WriteConfig implements Function: only writable bits change.
func (c *Config) WriteConfig(offset uint8, size int, value uint32) {
	for i := 0; i < size && int(offset)+i < ConfigBytes; i++ {
		o := int(offset) + i
		m := c.wmask[o]
		c.space[o] = c.space[o]&^m | uint8(value>>(8*i))&m
	}
	c.drive()
}
