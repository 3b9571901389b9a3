// Package i8042 is the PC's 8042 keyboard controller at ports 0x60 (data)
// and 0x64 (status and command), with an attached keyboard that has no
// keys pressed and no auxiliary (mouse) device: enough for Linux's i8042
// and atkbd probes, and for the reset line (command 0xFE).
//
// Reference: IBM "Personal System/2 Hardware Interface Technical
// Reference", keyboard/auxiliary device controller chapter: the status
// register bits, the controller command byte (CTR) and the commands 0x20
// (read CTR), 0x60 (write CTR), 0xA7/0xA8 (aux disable/enable), 0xA9 (aux
// interface test), 0xAA (self-test, answers 0x55), 0xAB (keyboard
// interface test), 0xAD/0xAE (keyboard disable/enable), 0xD0/0xD1 (read
// and write the output port: bit 0 is the system reset line, bit 1 A20),
// 0xD2/0xD3 (write the keyboard/aux output buffer), 0xD4 (write to the aux
// device) and 0xF0-0xFF (pulse output port bits 3-0 low for each 0 bit:
// 0xFE pulses reset). The keyboard side follows the same manual's
// keyboard commands (0xFF reset: 0xFA 0xAA; 0xF2 identify: 0xFA 0xAB
// 0x83; 0xEE echo; 0xED, 0xF0, 0xF3 take a parameter; others ACK 0xFA).
//
// A byte sent to the absent aux device is answered as a real controller
// does when no device clocks it in: 0xFE from the aux side with the
// timeout bit set in the status register, so a mouse probe fails at once.
// The controller's output buffer is modelled as a short queue (controller
// answers and keyboard responses in order); the head is what port 0x60
// reads. IRQ1 is high while the head is keyboard data and CTR bit 0 is
// set, IRQ12 likewise for aux data and CTR bit 1; when the head is read
// the lines drop, so the next byte raises a fresh edge. Scan-code
// translation (CTR bit 6) has nothing to translate: no key is ever
// pressed.
//
// # Saved state
//
// Save writes kind "8042" version 1: the controller RAM (bytes, 32; byte
// 0 is the CTR), the output port (u8), the status flags SYS, A2 and
// timeout (bool each), the pending controller command awaiting its data
// byte (u8, 0 for none), the output queue (bytes: pairs of data and
// source, 0 keyboard, 1 aux), the last byte read from port 0x60 (u8), the
// keyboard's pending command awaiting its parameter (u8, 0 for none), its
// scanning enabled (bool), its scan-code set (u8) and LEDs (u8).
package i8042

import (
	"github.com/doppel-ft/doppel/vmm/devices"
)

// Ports and offsets: map the device at DataPort with size 5 (0x60-0x64),
// or use DataPort and StatusPort separately with offsets 0 and 4.
const (
	DataPort   = 0x60
	StatusPort = 0x64
	Size       = 5
	offData    = 0
	offStatus  = 4
)

// Status register bits.
const (
	StatusOBF     = 1 << 0 // output buffer full
	StatusIBF     = 1 << 1 // input buffer full (never: writes complete at once)
	StatusSYS     = 1 << 2 // system flag, set by a passed self-test
	StatusA2      = 1 << 3 // the last write was a command (port 0x64)
	StatusInhibit = 1 << 4 // keyboard not inhibited (1)
	StatusAUXB    = 1 << 5 // the output buffer holds aux data
	StatusTimeout = 1 << 6
)

// Controller command byte (CTR) bits.
const (
	CTRKbdInt  = 1 << 0
	CTRAuxInt  = 1 << 1
	CTRSys     = 1 << 2
	CTRKbdDis  = 1 << 4
	CTRAuxDis  = 1 << 5
	CTRXlate   = 1 << 6
	defaultCTR = CTRXlate | CTRAuxDis | CTRSys | CTRKbdInt // as SeaBIOS leaves it
)

// Controller commands.
const (
	CmdReadCTR     = 0x20
	CmdWriteCTR    = 0x60
	CmdAuxDisable  = 0xA7
	CmdAuxEnable   = 0xA8
	CmdAuxTest     = 0xA9
	CmdSelfTest    = 0xAA
	CmdKbdTest     = 0xAB
	CmdKbdDisable  = 0xAD
	CmdKbdEnable   = 0xAE
	CmdReadOutput  = 0xD0
	CmdWriteOutput = 0xD1
	CmdWriteKbdBuf = 0xD2
	CmdWriteAuxBuf = 0xD3
	CmdWriteAux    = 0xD4
	CmdPulseBase   = 0xF0 // 0xF0-0xFF: pulse output bits 3-0 that are 0
	CmdReset       = 0xFE
)

// Output port bits.
const (
	OutResetLine = 1 << 0 // 0 holds the CPU in reset
	OutA20       = 1 << 1
	defaultOut   = OutResetLine | OutA20
)

// Answers.
const (
	SelfTestOK = 0x55
	kbdACK     = 0xFA
	kbdResend  = 0xFE
	kbdBATOK   = 0xAA
	kbdEcho    = 0xEE
)

const queueMax = 16

type entry struct {
	b   uint8
	aux bool
}

// Controller is the 8042 with its keyboard. Not safe for concurrent use.
type Controller struct {
	irq1, irq12 devices.Line
	reset       func()

	ram     [32]uint8 // ram[0] is the CTR
	out     uint8     // output port
	sys     bool
	a2      bool
	timeout bool
	pending uint8 // controller command waiting for its data byte
	queue   []entry
	last    uint8

	kbdPending uint8 // keyboard command waiting for its parameter
	kbdScan    bool
	kbdSet     uint8
	kbdLEDs    uint8

	l1, l12 bool // levels as driven
}

// New returns the controller as firmware leaves it (self-tested, CTR
// 0x65), driving irq1 and irq12, and calling reset when the guest pulses
// the reset line.
func New(irq1, irq12 devices.Line, reset func()) *Controller {
	c := &Controller{irq1: irq1, irq12: irq12, reset: reset}
	c.ram[0] = defaultCTR
	c.out = defaultOut
	c.sys = true
	c.kbdScan, c.kbdSet = true, 2
	return c
}

// A20 reports the A20 gate of the output port.
func (c *Controller) A20() bool { return c.out&OutA20 != 0 }

// Interrupts reports the levels of IRQ1 and IRQ12.
func (c *Controller) Interrupts() (irq1, irq12 bool) { return c.l1, c.l12 }

func (c *Controller) push(b uint8, aux bool) {
	if len(c.queue) < queueMax {
		c.queue = append(c.queue, entry{b, aux})
	}
}

func (c *Controller) levels() (bool, bool) {
	if len(c.queue) == 0 {
		return false, false
	}
	h := c.queue[0]
	return !h.aux && c.ram[0]&CTRKbdInt != 0, h.aux && c.ram[0]&CTRAuxInt != 0
}

func (c *Controller) drive() {
	l1, l12 := c.levels()
	if l1 != c.l1 {
		c.l1 = l1
		c.irq1.Set(l1)
	}
	if l12 != c.l12 {
		c.l12 = l12
		c.irq12.Set(l12)
	}
}

// PortIn implements devices.PortDevice.
func (c *Controller) PortIn(offset uint16, size int) uint32 {
	switch offset {
	case offData:
		if len(c.queue) > 0 {
			c.last = c.queue[0].b
			c.queue = c.queue[1:]
			c.timeout = false
			// Reading empties the buffer: the lines fall before the next
			// byte is loaded.
			if c.l1 {
				c.l1 = false
				c.irq1.Set(false)
			}
			if c.l12 {
				c.l12 = false
				c.irq12.Set(false)
			}
			c.drive()
		}
		return uint32(c.last)
	case offStatus:
		return uint32(c.status())
	}
	return 0xFF
}

func (c *Controller) status() uint8 {
	s := uint8(StatusInhibit)
	if len(c.queue) > 0 {
		s |= StatusOBF
		if c.queue[0].aux {
			s |= StatusAUXB
		}
	}
	if c.sys {
		s |= StatusSYS
	}
	if c.a2 {
		s |= StatusA2
	}
	if c.timeout {
		s |= StatusTimeout
	}
	return s
}

// PortOut implements devices.PortDevice.
func (c *Controller) PortOut(offset uint16, size int, value uint32) {
	v := uint8(value)
	switch offset {
	case offData:
		c.a2 = false
		c.writeData(v)
	case offStatus:
		c.a2 = true
		c.command(v)
	}
	c.drive()
}

func (c *Controller) command(v uint8) {
	c.pending = 0
	switch {
	case v >= CmdReadCTR && v < CmdReadCTR+32:
		c.push(c.ram[v-CmdReadCTR], false)
	case v >= CmdWriteCTR && v < CmdWriteCTR+32,
		v == CmdWriteOutput, v == CmdWriteKbdBuf, v == CmdWriteAuxBuf, v == CmdWriteAux:
		c.pending = v
	case v == CmdAuxDisable:
		c.ram[0] |= CTRAuxDis
	case v == CmdAuxEnable:
		c.ram[0] &^= CTRAuxDis
	case v == CmdAuxTest, v == CmdKbdTest:
		c.push(0x00, false) // no clock or data line stuck
	case v == CmdSelfTest:
		c.sys = true
		c.push(SelfTestOK, false)
	case v == CmdKbdDisable:
		c.ram[0] |= CTRKbdDis
	case v == CmdKbdEnable:
		c.ram[0] &^= CTRKbdDis
	case v == CmdReadOutput:
		c.push(c.out, false)
	case v >= CmdPulseBase:
		if v&OutResetLine == 0 {
			c.reset()
		}
	}
	// Other commands (input port, test inputs, vendor ones) do nothing.
}

func (c *Controller) writeData(v uint8) {
	cmd := c.pending
	c.pending = 0
	switch {
	case cmd >= CmdWriteCTR && cmd < CmdWriteCTR+32:
		c.ram[cmd-CmdWriteCTR] = v
		if cmd == CmdWriteCTR {
			c.sys = v&CTRSys != 0
		}
	case cmd == CmdWriteOutput:
		c.out = v
		if v&OutResetLine == 0 {
			c.out |= OutResetLine // the machine resets; the line comes back
			c.reset()
		}
	case cmd == CmdWriteKbdBuf:
		c.push(v, false)
	case cmd == CmdWriteAuxBuf:
		c.push(v, true)
	case cmd == CmdWriteAux:
		c.timeout = true // no aux device clocks the byte in
		c.push(kbdResend, true)
	default:
		c.keyboard(v)
	}
}

// keyboard is the attached keyboard receiving a byte.
func (c *Controller) keyboard(v uint8) {
	if p := c.kbdPending; p != 0 && v < 0xED { // a parameter, not a command
		c.kbdPending = 0
		switch p {
		case 0xED:
			c.kbdLEDs = v & 7
		case 0xF0:
			if v == 0 {
				c.push(kbdACK, false)
				c.push(c.kbdSet, false)
				return
			}
			if v <= 3 {
				c.kbdSet = v
			}
		}
		c.push(kbdACK, false)
		return
	}
	c.kbdPending = 0
	switch v {
	case 0xFF: // reset and self-test
		c.kbdScan, c.kbdSet, c.kbdLEDs = true, 2, 0
		c.push(kbdACK, false)
		c.push(kbdBATOK, false)
	case 0xF2: // identify: an MF2 keyboard
		c.push(kbdACK, false)
		c.push(0xAB, false)
		c.push(0x83, false)
	case kbdEcho:
		c.push(kbdEcho, false)
	case 0xED, 0xF0, 0xF3:
		c.kbdPending = v
		c.push(kbdACK, false)
	case 0xF4:
		c.kbdScan = true
		c.push(kbdACK, false)
	case 0xF5:
		c.kbdScan = false
		c.push(kbdACK, false)
	case 0xF6:
		c.kbdScan, c.kbdSet = true, 2
		c.push(kbdACK, false)
	default:
		if v >= 0xF7 {
			c.push(kbdACK, false) // set-3 key modes, resend: nothing to do
		} else {
			c.push(kbdResend, false) // not a command
		}
	}
}
