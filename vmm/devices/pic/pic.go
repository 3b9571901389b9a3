// Package pic is the PC's pair of Intel 8259A programmable interrupt
// controllers: the master at ports 0x20/0x21 with IRQ0-7, the slave at
// 0xA0/0xA1 with IRQ8-15 cascaded on the master's IR2, and the edge/level
// control registers (ELCR) at 0x4D0/0x4D1 of PIIX/ICH chipsets.
//
// Reference: Intel "8259A Programmable Interrupt Controller" datasheet
// (231468): the initialization command words ICW1-ICW4 (figure 6, the
// sequence of figure 5), the operation command words OCW1-OCW3 (figure 8),
// priority and EOI modes ("The Fully Nested Mode", "End of Interrupt",
// "Automatic Rotation", "Specific Rotation"), poll mode, the INTA sequence
// and spurious IR7 ("Interrupt Sequence": with no request at INTA time the
// 8259A answers IR7's vector without setting ISR), and cascading. ELCR:
// Intel 82371AB PIIX4 datasheet (290562), "ELCR1/ELCR2 — Edge/Level
// Triggered Registers": IRQ0, 1, 2, 8 and 13 are always edge triggered.
//
// Inputs are levels (Pin(n).Set). An edge-triggered input sets its IRR
// bit on a rising edge and the bit stays until the INTA cycle takes it; a
// level-triggered input (its ELCR bit, or ICW1.LTIM) holds its IRR bit
// while high. The master's INTR is the Line given to New; the vCPU runs
// the INTA cycle with Acknowledge. Special mask mode and special fully
// nested mode are not modelled (their bits are kept but do nothing).
//
// # Saved state
//
// Save writes kind "PIC2" version 1: for the master then the slave, the
// fields IRR, ISR, IMR, input levels, ELCR, priority base (lowest-priority
// IR + 1, 0-7), vector base (ICW2 & 0xF8), ICW1 (bits 0, 1, 3), ICW3,
// ICW4 (bits 0-4), the initialization step (0 none, 2, 3 or 4: the ICW
// expected next), OCW3 read-ISR (bool), poll pending (bool), rotate on
// auto-EOI (bool), all u8 unless noted.
package pic

import (
	"github.com/doppel-ft/doppel/vmm/devices"
)

// Port bases, each two ports wide (offset 0: ICW1/OCW2/OCW3 and IRR/ISR
// reads; offset 1: ICW2-4/OCW1 and IMR reads).
const (
	MasterPort = 0x20
	SlavePort  = 0xA0
	ELCRPort   = 0x4D0 // master ELCR at 0x4D0, slave at 0x4D1
	Size       = 2
)

// CascadeIRQ is the master input the slave's INT drives.
const CascadeIRQ = 2

// ICW1 bits (written at offset 0 with bit 4 set).
const (
	ICW1IC4  = 1 << 0 // ICW4 follows
	ICW1SNGL = 1 << 1 // single 8259A: no ICW3
	ICW1LTIM = 1 << 3 // all inputs level triggered
	ICW1Init = 1 << 4
	icw1Mask = ICW1IC4 | ICW1SNGL | ICW1LTIM
)

// ICW4 bits.
const (
	ICW4UPM  = 1 << 0 // 8086 mode
	ICW4AEOI = 1 << 1 // automatic end of interrupt
	ICW4SFNM = 1 << 4 // special fully nested (not modelled)
	icw4Mask = 0x1F
)

// OCW2 (offset 0, bits 4:3 = 00): bits 7:5 R, SL, EOI select the command,
// bits 2:0 the level for specific commands.
const (
	OCW2RotateAEOIClear = 0x00
	OCW2NonSpecificEOI  = 0x20
	OCW2NoOp            = 0x40
	OCW2SpecificEOI     = 0x60
	OCW2RotateAEOISet   = 0x80
	OCW2RotateNonSpec   = 0xA0
	OCW2SetPriority     = 0xC0
	OCW2RotateSpecific  = 0xE0
)

// OCW3 (offset 0, bits 4:3 = 01).
const (
	OCW3Select = 1 << 3
	OCW3RIS    = 1 << 0 // with RR: read ISR (else IRR)
	OCW3RR     = 1 << 1 // read register command
	OCW3Poll   = 1 << 2
)

// elcrMask are the inputs that may be level triggered (PIIX4 ELCR).
var elcrMask = [2]uint8{0xF8, 0xDE}

type chip struct {
	irr, isr, imr uint8
	pins          uint8 // input levels
	elcr          uint8
	prioAdd       uint8 // the highest-priority IR
	base          uint8 // ICW2 & 0xF8
	icw1          uint8
	icw3          uint8
	icw4          uint8
	initStep      uint8 // next ICW expected: 0 (none), 2, 3, 4
	readISR       bool
	poll          bool
	rotateAEOI    bool
}

func (c *chip) levelMask() uint8 {
	if c.icw1&ICW1LTIM != 0 {
		return 0xFF
	}
	return c.elcr
}

// setPin drives input n.
func (c *chip) setPin(n int, high bool) {
	m := uint8(1) << n
	if high {
		if c.pins&m == 0 || c.levelMask()&m != 0 {
			c.irr |= m
		}
		c.pins |= m
	} else {
		c.pins &^= m
		if c.levelMask()&m != 0 {
			c.irr &^= m
		}
	}
}

// priority returns the rank (0 highest) of the highest-priority bit of
// mask, 8 for none.
func (c *chip) priority(mask uint8) int {
	for p := 0; p < 8; p++ {
		if mask&(1<<((p+int(c.prioAdd))&7)) != 0 {
			return p
		}
	}
	return 8
}

// pending returns the IR the chip would signal, -1 for none: the highest
// unmasked request above every level in service (fully nested mode).
func (c *chip) pending() int {
	p := c.priority(c.irr &^ c.imr)
	if p == 8 || p >= c.priority(c.isr) {
		return -1
	}
	return (p + int(c.prioAdd)) & 7
}

// take runs this chip's part of an INTA cycle (or a poll) for IR n.
func (c *chip) take(n int) {
	m := uint8(1) << n
	if c.levelMask()&m == 0 {
		c.irr &^= m
	}
	if c.icw4&ICW4AEOI != 0 {
		if c.rotateAEOI {
			c.prioAdd = uint8(n+1) & 7
		}
	} else {
		c.isr |= m
	}
}

func (c *chip) writeCommand(v uint8) {
	switch {
	case v&ICW1Init != 0:
		c.icw1 = v & icw1Mask
		c.imr, c.isr, c.prioAdd = 0, 0, 0
		c.readISR, c.poll, c.rotateAEOI = false, false, false
		if c.icw1&ICW1IC4 == 0 {
			c.icw4 = 0
		}
		// The edge sense latch is reset: an edge input still high must
		// fall and rise again; a level input still requests.
		c.irr = c.pins & c.levelMask()
		c.initStep = 2
	case v&OCW3Select != 0:
		if v&OCW3Poll != 0 {
			c.poll = true
		}
		if v&OCW3RR != 0 {
			c.readISR = v&OCW3RIS != 0
		}
	default:
		c.writeOCW2(v)
	}
}

func (c *chip) writeOCW2(v uint8) {
	level := int(v & 7)
	switch v & 0xE0 {
	case OCW2RotateAEOIClear:
		c.rotateAEOI = false
	case OCW2RotateAEOISet:
		c.rotateAEOI = true
	case OCW2NonSpecificEOI, OCW2RotateNonSpec:
		p := c.priority(c.isr)
		if p == 8 {
			return
		}
		n := (p + int(c.prioAdd)) & 7
		c.isr &^= 1 << n
		if v&0xE0 == OCW2RotateNonSpec {
			c.prioAdd = uint8(n+1) & 7
		}
	case OCW2SpecificEOI:
		c.isr &^= 1 << level
	case OCW2RotateSpecific:
		c.isr &^= 1 << level
		c.prioAdd = uint8(level+1) & 7
	case OCW2SetPriority:
		c.prioAdd = uint8(level+1) & 7
	}
}

func (c *chip) writeData(v uint8) {
	switch c.initStep {
	case 2:
		c.base = v & 0xF8
		c.initStep = 0
		if c.icw1&ICW1SNGL == 0 {
			c.initStep = 3
		} else if c.icw1&ICW1IC4 != 0 {
			c.initStep = 4
		}
	case 3:
		c.icw3 = v
		c.initStep = 0
		if c.icw1&ICW1IC4 != 0 {
			c.initStep = 4
		}
	case 4:
		c.icw4 = v & icw4Mask
		c.initStep = 0
	default:
		c.imr = v // OCW1
	}
}

func (c *chip) readCommand() uint8 {
	if c.poll {
		c.poll = false
		n := c.pending()
		if n < 0 {
			return 0
		}
		c.take(n)
		return 0x80 | uint8(n)
	}
	if c.readISR {
		return c.isr
	}
	return c.irr
}

// Pair is the master/slave pair. Not safe for concurrent use.
type Pair struct {
	chips [2]chip
	intr  devices.Line
	level bool
}

// New returns the pair after power-on (uninitialised: the guest's ICW
// sequence programs it), driving intr with the master's INTR output.
func New(intr devices.Line) *Pair {
	return &Pair{intr: intr}
}

// update propagates the slave's INT to the master's IR2 and drives INTR.
func (p *Pair) update() {
	p.chips[0].setPin(CascadeIRQ, p.chips[1].pending() >= 0)
	if l := p.chips[0].pending() >= 0; l != p.level {
		p.level = l
		p.intr.Set(l)
	}
}

// Interrupt reports the level of INTR.
func (p *Pair) Interrupt() bool { return p.level }

type pin struct {
	p *Pair
	n int
}

func (l pin) Set(high bool) {
	l.p.chips[l.n/8].setPin(l.n%8, high)
	l.p.update()
}

// Pin returns the input line of IRQ n (0-15). IRQ2 is the cascade input,
// driven by the slave: devices of the ISA "IRQ2" use IRQ9.
func (p *Pair) Pin(n int) devices.Line {
	if n < 0 || n > 15 {
		panic("pic: IRQ out of range") // programming error
	}
	return pin{p, n}
}

// Acknowledge runs the INTA cycle and returns the vector to inject: the
// master's highest request (through the slave for IR2), or the spurious
// IR7 vector of the chip with nothing to give (ISR untouched).
func (p *Pair) Acknowledge() uint8 {
	defer p.update()
	m := &p.chips[0]
	n := m.pending()
	if n < 0 {
		return m.base + 7
	}
	m.take(n)
	if n != CascadeIRQ {
		return m.base + uint8(n)
	}
	s := &p.chips[1]
	sn := s.pending()
	if sn < 0 {
		return s.base + 7
	}
	s.take(sn)
	return s.base + uint8(sn)
}

// Port is one chip's two registers, a devices.PortDevice.
type Port struct {
	p *Pair
	c *chip
}

// Master returns the master's ports, to map at MasterPort.
func (p *Pair) Master() *Port { return &Port{p, &p.chips[0]} }

// Slave returns the slave's ports, to map at SlavePort.
func (p *Pair) Slave() *Port { return &Port{p, &p.chips[1]} }

// PortIn implements devices.PortDevice.
func (d *Port) PortIn(offset uint16, size int) uint32 {
	defer d.p.update()
	if offset == 0 {
		return uint32(d.c.readCommand())
	}
	if d.c.poll { // a poll is answered at either address
		return uint32(d.c.readCommand())
	}
	return uint32(d.c.imr)
}

// PortOut implements devices.PortDevice.
func (d *Port) PortOut(offset uint16, size int, value uint32) {
	if offset == 0 {
		d.c.writeCommand(uint8(value))
	} else {
		d.c.writeData(uint8(value))
	}
	d.p.update()
}

// ELCR returns the edge/level control registers, to map at ELCRPort.
func (p *Pair) ELCR() devices.PortDevice { return elcr{p} }

type elcr struct{ p *Pair }

func (e elcr) PortIn(offset uint16, size int) uint32 {
	var v uint32
	for i := 0; i < size && int(offset)+i < 2; i++ {
		v |= uint32(e.p.chips[int(offset)+i].elcr) << (8 * i)
	}
	return v
}

func (e elcr) PortOut(offset uint16, size int, value uint32) {
	for i := 0; i < size && int(offset)+i < 2; i++ {
		n := int(offset) + i
		c := &e.p.chips[n]
		c.elcr = uint8(value>>(8*i)) & elcrMask[n]
		// A level input's request follows the pin; one turned edge keeps
		// its latched request.
		c.irr = c.irr&^c.levelMask() | c.pins&c.levelMask()
	}
	e.p.update()
}
