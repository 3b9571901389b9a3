// Package uart is a 16550A UART device model: a pure state machine over
// the eight byte-wide registers, reached by offset-relative reads and
// writes, with bytes out through an io.Writer, bytes in through Receive or
// Enqueue, and its interrupt output on a devices.Line.
//
// Reference: National Semiconductor / TI "PC16550D Universal Asynchronous
// Receiver/Transmitter with FIFOs" (SNLS378C): section 8.4 (line status),
// 8.6 (interrupt identification, table 4 for priorities and reset
// control), 8.7 (interrupt enable), 8.8 (MCR, loopback), 8.9 (MSR).
// rust-vmm vm-superio's serial.rs shows what guest drivers expect of an
// emulated UART: output is instantaneous (THR and the transmitter are
// always empty) and the modem inputs report a connected peer (CTS, DSR,
// DCD).
//
// # Interrupts
//
// IIR is computed on every read from all pending sources, highest
// priority first (table 4): receiver line status (an overrun, enabled by
// IER bit 2), received data (FIFO at its trigger level, or any data with
// the FIFO off; IER bit 0), character timeout (data below the trigger
// level with the FIFO on; this model reports it at once, as if four
// character times had passed), transmitter holding register empty (IER
// bit 1), modem status (a delta bit in MSR, IER bit 3). The THRE source is
// set when THR empties (at once, after each THR write, and when IER bit 1
// is turned on) and cleared by a THR write or by an IIR read that reports
// it. The interrupt output is high while any source is pending and MCR
// OUT2 is set, as PC boards gate the UART's INTR with OUT2; in loopback
// the MCR outputs are held inactive at the pins (8.8), so it is low.
//
// # Saved state
//
// Save writes kind "UART" version 1, fields in this order: DLL, DLM, IER,
// LCR, MCR, SCR, FCR (u8 each), overrun error pending (bool), MSR (u8,
// with its delta bits), THRE interrupt pending (bool), last byte read from
// RBR (u8), the receive FIFO (bytes, at most FIFOSize), the overrun count
// (u64).
package uart

import (
	"io"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Register offsets from the base port (COM1 is 0x3F8), table 2 of the
// datasheet. Offsets 0 and 1 select the divisor latch when LCR.DLAB is set.
const (
	RBR = 0 // receiver buffer (read, DLAB=0)
	THR = 0 // transmitter holding (write, DLAB=0)
	DLL = 0 // divisor latch low (DLAB=1)
	IER = 1 // interrupt enable (DLAB=0)
	DLM = 1 // divisor latch high (DLAB=1)
	IIR = 2 // interrupt identification (read)
	FCR = 2 // FIFO control (write)
	LCR = 3 // line control
	MCR = 4 // modem control
	LSR = 5 // line status
	MSR = 6 // modem status
	SCR = 7 // scratch

	NumRegs = 8
)

// IER bits (8.7).
const (
	IERRxAvailable = 1 << 0 // received data available (and timeout)
	IERTHREmpty    = 1 << 1 // transmitter holding register empty
	IERLineStatus  = 1 << 2 // receiver line status
	IERModemStatus = 1 << 3 // modem status
	ierMask        = 0x0F
)

// IIR values (table 4): bit 0 clear when an interrupt is pending, bits 3:1
// the highest-priority source, bits 7:6 set when the FIFOs are enabled.
const (
	IIRModemStatus = 0x00
	IIRNoInterrupt = 0x01
	IIRTHREmpty    = 0x02
	IIRRxAvailable = 0x04
	IIRLineStatus  = 0x06
	IIRCharTimeout = 0x0C
	IIRFIFOEnabled = 0xC0
)

// FCR bits (8.5).
const (
	FCREnable       = 1 << 0
	FCRClearRx      = 1 << 1
	FCRClearTx      = 1 << 2
	FCRTriggerShift = 6 // bits 7:6: receive trigger level 1, 4, 8, 14
)

// LCR bits.
const (
	LCRDLAB = 1 << 7 // divisor latch access
	// LCR8N1 is 8 data bits, no parity, 1 stop bit.
	LCR8N1 = 0x03
)

// MCR bits (8.8).
const (
	MCRDTR      = 1 << 0
	MCRRTS      = 1 << 1
	MCROut1     = 1 << 2
	MCROut2     = 1 << 3
	MCRLoopback = 1 << 4
	mcrMask     = 0x1F
)

// LSR bits (8.4).
const (
	LSRDataReady = 1 << 0
	LSROverrun   = 1 << 1
	LSRTHREmpty  = 1 << 5 // always set: output never waits
	LSRTEMT      = 1 << 6 // always set: transmitter empty
)

// MSR bits (8.9): deltas in 3:0, line states in 7:4.
const (
	MSRDCTS = 1 << 0
	MSRDDSR = 1 << 1
	MSRTERI = 1 << 2 // trailing edge of RI
	MSRDDCD = 1 << 3
	MSRCTS  = 1 << 4
	MSRDSR  = 1 << 5
	MSRRI   = 1 << 6
	MSRDCD  = 1 << 7
	// msrConnected reports a peer that is present and ready.
	msrConnected = MSRCTS | MSRDSR | MSRDCD
)

// FIFOSize is the receive FIFO depth of a 16550A (1.0 of the datasheet).
// With the FIFO off the receiver holds one byte.
const FIFOSize = 16

var triggerLevels = [4]int{1, 4, 8, 14}

// Defaults after reset: divisor 12 (9600 baud from 1.8432 MHz), 8N1,
// DTR|RTS|OUT2 as BIOSes leave them.
const (
	defaultDivisor = 12
	defaultLCR     = LCR8N1
	defaultMCR     = MCRDTR | MCRRTS | MCROut2
)

// UART is one 16550A. It is not safe for concurrent use.
type UART struct {
	out io.Writer
	irq devices.Line

	dll, dlm byte
	ier      byte
	lcr, mcr byte
	scr, fcr byte
	overrun  bool // LSR.OE, until LSR is read
	msr      byte
	thri     bool // THRE interrupt pending
	lastRx   byte
	rx       []byte
	level    bool // the interrupt output as last driven

	// Overruns counts received bytes lost to a full receiver.
	Overruns uint64
	// OutErrors counts bytes the writer refused (not guest state).
	OutErrors uint64
}

// New returns a UART in its reset state writing output to out and driving
// irq (use devices.NoLine for none).
func New(out io.Writer, irq devices.Line) *UART {
	u := &UART{out: out, irq: irq, rx: make([]byte, 0, FIFOSize)}
	u.dll = defaultDivisor
	u.lcr, u.mcr = defaultLCR, defaultMCR
	u.msr = msrConnected
	return u
}

func (u *UART) dlab() bool     { return u.lcr&LCRDLAB != 0 }
func (u *UART) loopback() bool { return u.mcr&MCRLoopback != 0 }
func (u *UART) fifoOn() bool   { return u.fcr&FCREnable != 0 }

func (u *UART) capacity() int {
	if u.fifoOn() {
		return FIFOSize
	}
	return 1
}

// iir computes the interrupt identification from all pending sources.
func (u *UART) iir() byte {
	switch {
	case u.ier&IERLineStatus != 0 && u.overrun:
		return IIRLineStatus
	case u.ier&IERRxAvailable != 0 && len(u.rx) > 0:
		if u.fifoOn() && len(u.rx) < triggerLevels[u.fcr>>FCRTriggerShift] {
			return IIRCharTimeout
		}
		return IIRRxAvailable
	case u.ier&IERTHREmpty != 0 && u.thri:
		return IIRTHREmpty
	case u.ier&IERModemStatus != 0 && u.msr&0x0F != 0:
		return IIRModemStatus
	}
	return IIRNoInterrupt
}

func (u *UART) output() bool {
	return u.iir() != IIRNoInterrupt && u.mcr&MCROut2 != 0 && !u.loopback()
}

// update drives the interrupt output on a change of level.
func (u *UART) update() {
	if l := u.output(); l != u.level {
		u.level = l
		u.irq.Set(l)
	}
}

// modemInputs returns the MSR line states: a connected peer, or in
// loopback the MCR outputs wired back (DTR→DSR, RTS→CTS, OUT1→RI,
// OUT2→DCD).
func (u *UART) modemInputs() byte {
	if !u.loopback() {
		return msrConnected
	}
	m := u.mcr
	return (m&MCRDTR)<<5 | (m&MCRRTS)<<3 | (m&MCROut1)<<4 | (m&MCROut2)<<4
}

func (u *UART) setModemInputs(in byte) {
	old := u.msr
	changed := old ^ in
	d := old & 0x0F
	if changed&MSRCTS != 0 {
		d |= MSRDCTS
	}
	if changed&MSRDSR != 0 {
		d |= MSRDDSR
	}
	if old&MSRRI != 0 && in&MSRRI == 0 {
		d |= MSRTERI
	}
	if changed&MSRDCD != 0 {
		d |= MSRDDCD
	}
	u.msr = in | d
}

// Write stores value to the register at offset (0-7).
func (u *UART) Write(offset uint8, value byte) {
	switch {
	case offset == DLL && u.dlab():
		u.dll = value
	case offset == DLM && u.dlab():
		u.dlm = value
	case offset == THR:
		u.transmit(value)
	case offset == IER:
		old := u.ier
		u.ier = value & ierMask
		if old&IERTHREmpty == 0 && u.ier&IERTHREmpty != 0 {
			u.thri = true // THR is empty: enabling the source raises it
		}
	case offset == FCR:
		u.writeFCR(value)
	case offset == LCR:
		u.lcr = value
	case offset == MCR:
		u.mcr = value & mcrMask
		u.setModemInputs(u.modemInputs())
	case offset == SCR:
		u.scr = value
	}
	// LSR and MSR are read-only; writes are ignored.
	u.update()
}

func (u *UART) writeFCR(value byte) {
	// Changing the enable bit clears both FIFOs (8.5, FCR0).
	if (value^u.fcr)&FCREnable != 0 || value&FCRClearRx != 0 {
		u.rx = u.rx[:0]
	}
	u.fcr = value &^ (FCRClearRx | FCRClearTx) // the clear bits self-clear
	if !u.fifoOn() {
		u.fcr = 0
	}
}

func (u *UART) transmit(b byte) {
	u.thri = false // the write clears THRE...
	if u.loopback() {
		u.Receive(b)
	} else if _, err := u.out.Write([]byte{b}); err != nil {
		u.OutErrors++
	}
	u.thri = true // ...and the byte leaves at once, so THR empties again.
}

// Read returns the register at offset (0-7), with its read side effects.
func (u *UART) Read(offset uint8) byte {
	var v byte
	switch {
	case offset == DLL && u.dlab():
		v = u.dll
	case offset == DLM && u.dlab():
		v = u.dlm
	case offset == RBR:
		v = u.pop()
	case offset == IER:
		v = u.ier
	case offset == IIR:
		v = u.iir()
		if v == IIRTHREmpty { // reading IIR acknowledges THRE (table 4)
			u.thri = false
		}
		if u.fifoOn() {
			v |= IIRFIFOEnabled
		}
	case offset == LCR:
		v = u.lcr
	case offset == MCR:
		v = u.mcr
	case offset == LSR:
		v = LSRTHREmpty | LSRTEMT
		if len(u.rx) > 0 {
			v |= LSRDataReady
		}
		if u.overrun {
			v |= LSROverrun
			u.overrun = false
		}
	case offset == MSR:
		v = u.msr
		u.msr &^= 0x0F
	case offset == SCR:
		v = u.scr
	default:
		return 0xFF
	}
	u.update()
	return v
}

func (u *UART) pop() byte {
	if len(u.rx) > 0 {
		u.lastRx = u.rx[0]
		copy(u.rx, u.rx[1:])
		u.rx = u.rx[:len(u.rx)-1]
	}
	return u.lastRx
}

// Receive delivers one byte from the line. When the receiver is full the
// byte is lost: LSR reports an overrun and Overruns counts it.
func (u *UART) Receive(b byte) {
	if len(u.rx) >= u.capacity() {
		u.overrun = true
		u.Overruns++
	} else {
		u.rx = append(u.rx, b)
	}
	u.update()
}

// Enqueue offers input bytes with back-pressure: it takes only what fits
// in the receiver and returns how many it took, so a host console loses
// nothing.
func (u *UART) Enqueue(b []byte) int {
	n := min(len(b), u.capacity()-len(u.rx))
	if n <= 0 {
		return 0
	}
	u.rx = append(u.rx, b[:n]...)
	u.update()
	return n
}

// Interrupt reports the level of the interrupt output.
func (u *UART) Interrupt() bool { return u.level }

// PortIn implements devices.PortDevice: wider accesses read the register
// at offset and return it in the low byte.
func (u *UART) PortIn(offset uint16, size int) uint32 {
	if offset >= NumRegs {
		return 0xFF
	}
	return uint32(u.Read(uint8(offset)))
}

// PortOut implements devices.PortDevice: the low byte goes to the
// register.
func (u *UART) PortOut(offset uint16, size int, value uint32) {
	if offset < NumRegs {
		u.Write(uint8(offset), byte(value))
	}
}
