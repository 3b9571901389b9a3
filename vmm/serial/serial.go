// Package serial is a 16550A UART device model for guests: a pure state
// machine over the eight byte-wide registers, reached by offset-relative
// reads and writes, with bytes out through an io.Writer and interrupts
// through an injected trigger.
//
// Reference: Texas Instruments "TL16C550D Asynchronous Communications
// Element with Autoflow Control" (SLLS057), section 8 (registers), the
// PC16550D datasheet's register summary, and rust-vmm vm-superio's serial.rs
// for the behaviour a guest driver expects from an emulated UART: the
// transmitter is always empty (output is instantaneous), the modem lines
// report a connected peer, and the FIFO enable bits show in IIR.
package serial

import (
	"io"
)

// Register offsets from the base port (COM1 is 0x3F8), table 2 of SLLS057.
// Offsets 0 and 1 select the divisor latch instead when LCR.DLAB is set.
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

// IER bits.
const (
	IERRxAvailable = 1 << 0 // received data available interrupt
	IERTHREmpty    = 1 << 1 // transmitter holding register empty interrupt
	IERLineStatus  = 1 << 2
	IERModemStatus = 1 << 3
	ierMask        = 0x0F
)

// IIR values: bit 0 clear when an interrupt is pending, bits 3:1 its
// identification, bits 7:6 set when the FIFOs are enabled.
const (
	IIRNoInterrupt = 0x01
	IIRTHREmpty    = 0x02
	IIRRxAvailable = 0x04
	IIRFIFOEnabled = 0xC0
)

// FCR bits.
const (
	FCREnable  = 1 << 0
	FCRClearRx = 1 << 1
)

// LCR bits.
const (
	LCRDLAB = 1 << 7 // divisor latch access
	// LCR8N1 is 8 data bits, no parity, 1 stop bit.
	LCR8N1 = 0x03
)

// MCR bits.
const (
	MCRDTR      = 1 << 0
	MCRRTS      = 1 << 1
	MCROut1     = 1 << 2
	MCROut2     = 1 << 3
	MCRLoopback = 1 << 4
)

// LSR bits.
const (
	LSRDataReady = 1 << 0
	LSRTHREmpty  = 1 << 5 // always set: output never waits
	LSRTEMT      = 1 << 6 // always set: transmitter empty
)

// MSR bits.
const (
	MSRCTS = 1 << 4
	MSRDSR = 1 << 5
	MSRRI  = 1 << 6
	MSRDCD = 1 << 7
	// msrConnected reports a peer that is present and ready: CTS, DSR, DCD.
	msrConnected = MSRCTS | MSRDSR | MSRDCD
)

// FIFOSize is the receive FIFO depth of a 16550A.
const FIFOSize = 64

// Defaults after reset: divisor 12 (9600 baud from 1.8432 MHz), 8N1,
// DTR|RTS|OUT2 as BIOSes leave them.
const (
	defaultDivisor = 12
	defaultLCR     = LCR8N1
	defaultMCR     = MCRDTR | MCRRTS | MCROut2
)

// Serial is one 16550A. It is not safe for concurrent use: the vCPU thread
// drives it.
type Serial struct {
	out     io.Writer
	trigger func()

	dll, dlm byte
	ier, iir byte
	lcr, mcr byte
	lsr, msr byte
	scr      byte
	fcr      byte
	rx       []byte

	// OutErrors counts bytes the writer refused.
	OutErrors uint64
}

// New returns a UART in its reset state writing output to out and calling
// trigger (may be nil) when it raises its interrupt line.
func New(out io.Writer, trigger func()) *Serial {
	s := &Serial{out: out, trigger: trigger}
	s.reset()
	return s
}

func (s *Serial) reset() {
	s.dll, s.dlm = defaultDivisor, 0
	s.ier, s.iir = 0, IIRNoInterrupt
	s.lcr, s.mcr = defaultLCR, defaultMCR
	s.lsr = LSRTHREmpty | LSRTEMT
	s.msr = msrConnected
	s.scr, s.fcr = 0, 0
	s.rx = s.rx[:0]
}

func (s *Serial) dlab() bool { return s.lcr&LCRDLAB != 0 }

func (s *Serial) raise(id byte) {
	s.iir = id
	if s.trigger != nil {
		s.trigger()
	}
}

// Write stores value to the register at offset (0-7).
func (s *Serial) Write(offset uint8, value byte) {
	switch {
	case offset == DLL && s.dlab():
		s.dll = value
	case offset == DLM && s.dlab():
		s.dlm = value
	case offset == THR:
		s.transmit(value)
	case offset == IER:
		s.ier = value & ierMask
		if s.ier&IERTHREmpty != 0 {
			s.raise(IIRTHREmpty) // the holding register is always empty
		} else if s.iir == IIRTHREmpty {
			s.iir = IIRNoInterrupt
		}
	case offset == FCR:
		s.fcr = value
		if value&FCRClearRx != 0 {
			s.rx = s.rx[:0]
			s.lsr &^= LSRDataReady
		}
	case offset == LCR:
		s.lcr = value
	case offset == MCR:
		s.mcr = value
	case offset == SCR:
		s.scr = value
	}
	// LSR and MSR are read-only; writes are ignored.
}

func (s *Serial) transmit(b byte) {
	if s.mcr&MCRLoopback != 0 {
		s.receive(b)
	} else if _, err := s.out.Write([]byte{b}); err != nil {
		s.OutErrors++
	}
	if s.ier&IERTHREmpty != 0 {
		s.raise(IIRTHREmpty)
	}
}

// Read returns the register at offset (0-7), with its read side effects.
func (s *Serial) Read(offset uint8) byte {
	switch {
	case offset == DLL && s.dlab():
		return s.dll
	case offset == DLM && s.dlab():
		return s.dlm
	case offset == RBR:
		return s.pop()
	case offset == IER:
		return s.ier
	case offset == IIR:
		v := s.iir
		if s.fcr&FCREnable != 0 {
			v |= IIRFIFOEnabled
		}
		if s.iir == IIRTHREmpty { // reading IIR acknowledges THRE
			s.iir = IIRNoInterrupt
		}
		return v
	case offset == LCR:
		return s.lcr
	case offset == MCR:
		return s.mcr
	case offset == LSR:
		return s.lsr
	case offset == MSR:
		if s.mcr&MCRLoopback != 0 {
			// Loopback wires DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
			m := s.mcr
			return (m&MCRDTR)<<5 | (m&MCRRTS)<<3 | (m&MCROut1)<<4 | (m&MCROut2)<<4
		}
		return s.msr
	case offset == SCR:
		return s.scr
	}
	return 0xFF
}

func (s *Serial) pop() byte {
	if len(s.rx) == 0 {
		return 0
	}
	b := s.rx[0]
	s.rx = s.rx[1:]
	if len(s.rx) == 0 {
		s.lsr &^= LSRDataReady
		if s.iir == IIRRxAvailable {
			s.iir = IIRNoInterrupt
		}
	}
	return b
}

func (s *Serial) receive(b byte) bool {
	if len(s.rx) >= FIFOSize {
		return false
	}
	s.rx = append(s.rx, b)
	s.lsr |= LSRDataReady
	if s.ier&IERRxAvailable != 0 {
		s.raise(IIRRxAvailable)
	}
	return true
}

// Enqueue offers input bytes to the guest and returns how many fit in the
// receive FIFO.
func (s *Serial) Enqueue(b []byte) int {
	for i, c := range b {
		if !s.receive(c) {
			return i
		}
	}
	return len(b)
}

// PortIn implements vmm.PortDevice: wider accesses read the register at
// offset and return it in the low byte.
func (s *Serial) PortIn(offset uint16, size int) uint32 {
	if offset >= NumRegs {
		return 0xFF
	}
	return uint32(s.Read(uint8(offset)))
}

// PortOut implements vmm.PortDevice: the low byte goes to the register.
func (s *Serial) PortOut(offset uint16, size int, value uint32) {
	if offset < NumRegs {
		s.Write(uint8(offset), byte(value))
	}
}
