// Package pit is the PC's Intel 8254 programmable interval timer (ports
// 0x40-0x43) with the chipset's port 0x61 (NMI status and control: the
// gate of counter 2, the speaker enable and counter 2's output, which
// Linux reads to calibrate the TSC).
//
// Reference: Intel "8254 Programmable Interval Timer" datasheet (231164):
// control word format (figure 7), counter latch command, read-back command
// and status byte (figures 9-11), read/write of LSB, MSB or LSB then MSB,
// the six modes (figures 12-17) and the gate table (figure 18). Port 0x61:
// Intel 82371AB PIIX4 datasheet (290562), "NMISC — NMI Status and Control
// Register" (bit 0 timer 2 gate, bit 1 speaker data enable, bit 4 refresh
// cycle toggle, bit 5 timer 2 OUT).
//
// Time comes from a devices.Clock: the counters run at 1.193182 MHz
// (Freq) of guest time. Counter 0's OUT drives a devices.Line (IRQ0);
// counters 0 and 1 have their gates tied high, counter 2's gate is port
// 0x61 bit 0. The Timer deadlines are the rising edges of counter 0's
// OUT (the edge an IRQ0 input latches); Poll and every port access bring
// the line up to date, pulsing it when a rising edge fell between two
// updates.
//
// Simplifications: BCD counting is refused (the BCD bit is kept and
// reported in the status byte but counting is binary); a new count takes
// effect at once in every mode (the 8254 waits for the end of the period
// in modes 2 and 3); counting starts on the write of the count, not on
// the next CLK pulse.
//
// # Saved state
//
// Save writes kind "PIT4" version 1: for counters 0, 1, 2: mode, RW
// (u8 each), BCD (bool), count register (u32, 1-65536), loaded, gate,
// running (bool), run start (i64, guest ns), paused ticks (u64), ticks at
// the last update (u64), OUT as last driven, next write is the MSB, (bool
// each), pending LSB (u8), next read is the MSB, count latched (bool),
// latched count (u16), status latched (bool), status (u8), null count
// (bool); then port 0x61's writable bits (u8).
package pit

import (
	"math"
	"math/bits"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Ports.
const (
	Port        = 0x40 // counters 0-2 at offsets 0-2, control word at 3
	Size        = 4
	SpeakerPort = 0x61
)

// Freq is the counters' input clock in Hz.
const Freq = 1193182

// Control word fields (figure 7).
const (
	cwSCShift   = 6 // select counter; 3 is the read-back command
	cwRWShift   = 4 // 0 latch command, 1 LSB, 2 MSB, 3 LSB then MSB
	cwModeShift = 1
	cwBCD       = 1 << 0

	SCReadBack = 3
	RWLatch    = 0
	RWLSB      = 1
	RWMSB      = 2
	RWLSBMSB   = 3
)

// Read-back command bits (figure 9): active low.
const (
	rbNotCount  = 1 << 5
	rbNotStatus = 1 << 4
)

// Status byte bits (figure 10).
const (
	StatusOut       = 1 << 7
	StatusNullCount = 1 << 6
)

// Port 0x61 bits.
const (
	NMISCGate2     = 1 << 0 // timer 2 gate
	NMISCSpeaker   = 1 << 1 // speaker data enable
	NMISCRefresh   = 1 << 4 // refresh cycle toggle (read only)
	NMISCOut2      = 1 << 5 // timer 2 OUT (read only)
	nmiscWritable  = 0x0F
	refreshPeriod  = 15085 // ns, the refresh toggle's half period
	ticksPerSecond = Freq
)

// PIT is the 8254 and port 0x61. Not safe for concurrent use.
type PIT struct {
	clock devices.Clock
	irq0  devices.Line
	ch    [3]channel
	nmisc uint8
}

// New returns the PIT after reset (no counter programmed), timed by clock
// and driving irq0 with counter 0's OUT.
func New(clock devices.Clock, irq0 devices.Line) *PIT {
	p := &PIT{clock: clock, irq0: irq0}
	for i := range p.ch {
		c := &p.ch[i]
		c.gate = i != 2
		c.reload = 0x10000
		c.rw = RWLSBMSB
	}
	return p
}

// ticks converts guest ns to elapsed input clocks, rounding down.
func ticks(ns int64) uint64 {
	if ns <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(ns), Freq)
	q, _ := bits.Div64(hi, lo, 1e9) // hi < 1e9 for any int64 ns
	return q
}

// nanos converts input clocks to the first guest ns at which ticks
// reaches them, saturating.
func nanos(t uint64) int64 {
	hi, lo := bits.Mul64(t, 1e9)
	lo, c := bits.Add64(lo, Freq-1, 0)
	hi += c
	if hi >= Freq {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, Freq)
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// update brings counter 0's line to now.
func (p *PIT) update(now int64) {
	c := &p.ch[0]
	n := c.elapsed(now)
	out := c.output(n)
	if c.rose(c.seen, n) {
		if c.out {
			p.irq0.Set(false)
		}
		p.irq0.Set(true)
		c.out = true
	}
	if out != c.out {
		c.out = out
		p.irq0.Set(out)
	}
	c.seen = n
}

// Interrupt reports the level of counter 0's OUT as last driven.
func (p *PIT) Interrupt() bool { return p.ch[0].out }

// NextDeadline implements devices.Timer: the next rising edge of counter
// 0's OUT.
func (p *PIT) NextDeadline() (int64, bool) {
	c := &p.ch[0]
	t, ok := c.nextRise(c.seen)
	if !ok {
		return 0, false
	}
	d := nanos(t - c.paused)
	if d > math.MaxInt64-c.runStart {
		return math.MaxInt64, true
	}
	return c.runStart + d, true
}

// Poll implements devices.Timer.
func (p *PIT) Poll(now int64) { p.update(now) }

// PortIn implements devices.PortDevice for the counters at Port.
func (p *PIT) PortIn(offset uint16, size int) uint32 {
	now := p.clock.Nanotime()
	defer p.update(now)
	if offset > 2 {
		return 0xFF // the control word is write-only
	}
	return uint32(p.ch[offset].read(now))
}

// PortOut implements devices.PortDevice for the counters at Port.
func (p *PIT) PortOut(offset uint16, size int, value uint32) {
	now := p.clock.Nanotime()
	p.update(now) // edges before the write happened before it
	v := uint8(value)
	switch {
	case offset < 3:
		p.ch[offset].write(now, v)
	case offset == 3:
		p.control(now, v)
	}
	p.update(now)
}

func (p *PIT) control(now int64, v uint8) {
	sc := v >> cwSCShift
	if sc == SCReadBack {
		for i := range p.ch {
			if v&(2<<i) == 0 {
				continue
			}
			c := &p.ch[i]
			if v&rbNotStatus == 0 && !c.statusLatched {
				c.statusLatched = true
				c.status = c.statusByte(now)
			}
			if v&rbNotCount == 0 {
				c.latchCount(now)
			}
		}
		return
	}
	c := &p.ch[sc]
	rw := (v >> cwRWShift) & 3
	if rw == RWLatch {
		c.latchCount(now)
		return
	}
	c.program(rw, (v>>cwModeShift)&7, v&cwBCD != 0)
}

// Speaker returns port 0x61, to map at SpeakerPort.
func (p *PIT) Speaker() devices.PortDevice { return speaker{p} }

type speaker struct{ p *PIT }

func (s speaker) PortIn(offset uint16, size int) uint32 {
	now := s.p.clock.Nanotime()
	v := s.p.nmisc
	if (now/refreshPeriod)&1 != 0 {
		v |= NMISCRefresh
	}
	if c := &s.p.ch[2]; c.output(c.elapsed(now)) {
		v |= NMISCOut2
	}
	return uint32(v)
}

func (s speaker) PortOut(offset uint16, size int, value uint32) {
	now := s.p.clock.Nanotime()
	s.p.nmisc = uint8(value) & nmiscWritable
	s.p.ch[2].setGate(now, value&NMISCGate2 != 0)
}
