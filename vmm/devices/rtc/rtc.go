// Package rtc is the PC's Motorola MC146818 real-time clock and CMOS RAM
// at ports 0x70 (index, with the NMI mask in bit 7) and 0x71 (data).
//
// Reference: Motorola MC146818A datasheet: the address map (figure 3),
// time, calendar and alarm registers (table 3: BCD or binary, 12 or 24
// hour), register A (UIP, divider DV2-0, rate select RS3-0 and table 4's
// periodic rates), register B (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE),
// register C (IRQF, PF, AF, UF, cleared by reading), register D (VRT),
// "Update Cycle" (UIP is high for the 244 µs before each update) and the
// alarm "don't care" codes (0xC0-0xFF). The NMI mask in port 0x70 bit 7 is
// the PC's (PIIX4 datasheet 290562, "RTCI — Real-Time Clock Index"). The
// CMOS memory-size bytes follow QEMU's pc_cmos_init and SeaBIOS.
//
// Time: the clock is a wall-clock start time plus the guest Clock's
// progress, so a restored machine keeps the same time line. While SET is
// 1 or the divider is not in its normal 32.768 kHz state (DV = 010) the
// time does not advance; leaving divider reset starts the first update
// half a second later, as the datasheet says. The time and calendar are
// kept as a count of seconds: a written register is merged into it and
// the result normalised (day 31 of a 30-day month becomes the 1st of the
// next), and the registers are encoded in the format register B selects
// at the time they are read. The day-of-week register follows the date;
// writes to it are ignored. Daylight saving (DSE) and the square-wave
// output are not modelled.
//
// Interrupts: PF, AF and UF are set as their events pass whether or not
// enabled; IRQF and the IRQ8 Line are high while a flag is set with its
// enable bit. Reading register C clears the flags and lowers the line.
// Timer deadlines are the next periodic tick (PIE), the next second
// boundary (UIE or AIE), and none while the line is already high.
//
// # Saved state
//
// Save writes kind "RTC1" version 1: the index register (u8), NMI masked
// (bool), the 128 CMOS bytes (bytes; the time registers' slots are
// unused), the time in seconds since 1970 UTC at the update anchor (i64),
// the update anchor (i64, guest ns), the divider anchor (i64, guest ns),
// and the guest time the flags were last brought up to (i64).
package rtc

import (
	"time"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Ports.
const (
	Port = 0x70 // index at offset 0, data at offset 1
	Size = 2

	IndexNMIDisable = 1 << 7 // port 0x70 bit 7
	indexMask       = 0x7F
)

// Register indexes (figure 3) and the PC's century byte.
const (
	RegSeconds      = 0x00
	RegSecondsAlarm = 0x01
	RegMinutes      = 0x02
	RegMinutesAlarm = 0x03
	RegHours        = 0x04
	RegHoursAlarm   = 0x05
	RegDayOfWeek    = 0x06
	RegDayOfMonth   = 0x07
	RegMonth        = 0x08
	RegYear         = 0x09
	RegA            = 0x0A
	RegB            = 0x0B
	RegC            = 0x0C
	RegD            = 0x0D
	RegCentury      = 0x32
	NumBytes        = 128
)

// Register A.
const (
	AUIP      = 1 << 7
	ADVShift  = 4
	ADVMask   = 7 << ADVShift
	ADVNormal = 2 << ADVShift // 32.768 kHz time base, divider running
	ARSMask   = 0x0F
)

// Register B.
const (
	BSET  = 1 << 7
	BPIE  = 1 << 6
	BAIE  = 1 << 5
	BUIE  = 1 << 4
	BSQWE = 1 << 3
	BDM   = 1 << 2 // binary (1) or BCD (0)
	B24   = 1 << 1 // 24-hour (1) or 12-hour (0)
	BDSE  = 1 << 0
)

// Register C.
const (
	CIRQF = 1 << 7
	CPF   = 1 << 6
	CAF   = 1 << 5
	CUF   = 1 << 4
)

// DVRT is register D's valid RAM and time bit.
const DVRT = 1 << 7

const (
	second  = int64(time.Second)
	uipHold = second * 8 / 32768 // 244 µs: UIP before an update
	hzBase  = 32768
)

// RTC is the clock and its CMOS RAM. Not safe for concurrent use.
type RTC struct {
	clock devices.Clock
	irq   devices.Line

	index uint8
	nmi   bool // NMI masked
	ram   [NumBytes]byte
	secs  int64 // time at updAnchor (frozen time while halted)
	upd   int64 // updates happen at upd + k seconds
	div   int64 // periodic ticks count from div
	seen  int64 // flags are up to date to this guest time
	level bool
}

// New returns the RTC showing start at the clock's current time, with
// register A at 0x26 (32.768 kHz, 1024 Hz rate) and B at 0x02 (24-hour,
// BCD) as firmware leaves them, driving irq (IRQ8).
func New(clock devices.Clock, irq devices.Line, start time.Time) *RTC {
	now := clock.Nanotime()
	r := &RTC{clock: clock, irq: irq, secs: start.Unix(), upd: now, div: now, seen: now}
	r.ram[RegA] = ADVNormal | 6
	r.ram[RegB] = B24
	return r
}

// Set stores a CMOS byte outside the clock registers (0x0E-0x7F but
// 0x32), for the machine's configuration bytes.
func (r *RTC) Set(index uint8, v byte) {
	if index >= RegD+1 && index < NumBytes && index != RegCentury {
		r.ram[index] = v
	}
}

// SetMemorySize fills the memory-size bytes the way QEMU does for
// SeaBIOS and older loaders: base memory 640 KiB (0x15-0x16), extended
// memory above 1 MiB in KiB capped at 0xFFFF (0x17-0x18 and 0x30-0x31),
// memory above 16 MiB in 64 KiB units capped at 0xFFFF (0x34-0x35), and
// memory above 4 GiB in 64 KiB units (0x5B-0x5D).
func (r *RTC) SetMemorySize(below4G, above4G uint64) {
	const kib, mib = 1 << 10, 1 << 20
	put16 := func(i uint8, v uint64) {
		v = min(v, 0xFFFF)
		r.ram[i], r.ram[i+1] = byte(v), byte(v>>8)
	}
	put16(0x15, 640)
	var ext, above16 uint64
	if below4G > mib {
		ext = (below4G - mib) / kib
	}
	if below4G > 16*mib {
		above16 = (below4G - 16*mib) / (64 * kib)
	}
	put16(0x17, ext)
	put16(0x30, ext)
	put16(0x34, above16)
	hi := above4G / (64 * kib)
	r.ram[0x5B], r.ram[0x5C], r.ram[0x5D] = byte(hi), byte(hi>>8), byte(hi>>16)
}

// NMIMasked reports port 0x70 bit 7: NMIs are blocked.
func (r *RTC) NMIMasked() bool { return r.nmi }

// Interrupt reports the level of IRQ8.
func (r *RTC) Interrupt() bool { return r.level }

func (r *RTC) updating() bool { return r.ram[RegB]&BSET == 0 && r.dividing() }
func (r *RTC) dividing() bool { return r.ram[RegA]&ADVMask == ADVNormal }

// now returns the time in seconds at guest time t.
func (r *RTC) now(t int64) int64 {
	if !r.updating() {
		return r.secs
	}
	return r.secs + floorDiv(t-r.upd, second)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// periodTicks returns the periodic interrupt's period in 32.768 kHz
// ticks (table 4), 0 for none.
func (r *RTC) periodTicks() int64 {
	rs := int64(r.ram[RegA] & ARSMask)
	switch {
	case rs == 0:
		return 0
	case rs <= 2:
		return 1 << (rs + 6)
	}
	return 1 << (rs - 1)
}

// ticks32k returns whole 32.768 kHz ticks from div to t.
func ticks32k(d int64) int64 {
	if d < 0 {
		return -1
	}
	// d < 2^63 ns; split to keep d*32768 in range.
	return d/second*hzBase + (d%second)*hzBase/second
}

// advance sets the flags of the events between r.seen and t.
func (r *RTC) advance(t int64) {
	if t <= r.seen {
		return
	}
	if p := r.periodTicks(); p != 0 && r.dividing() {
		if ticks32k(t-r.div)/p > ticks32k(r.seen-r.div)/p {
			r.ram[RegC] |= CPF
		}
	}
	if r.updating() {
		k0, k1 := floorDiv(r.seen-r.upd, second), floorDiv(t-r.upd, second)
		if k1 > k0 {
			r.ram[RegC] |= CUF
			if r.alarmBetween(r.secs+k0, r.secs+k1) {
				r.ram[RegC] |= CAF
			}
		}
	}
	r.seen = t
}

// sync brings flags and the line up to now.
func (r *RTC) sync(t int64) {
	r.advance(t)
	r.drive()
}

func (r *RTC) irqf() bool {
	return r.ram[RegC]&r.ram[RegB]&(CPF|CAF|CUF) != 0
}

func (r *RTC) drive() {
	if l := r.irqf(); l != r.level {
		r.level = l
		r.irq.Set(l)
	}
}

// NextDeadline implements devices.Timer.
func (r *RTC) NextDeadline() (int64, bool) {
	if r.irqf() {
		return 0, false // the line is high until the guest reads C
	}
	var best int64
	ok := false
	if p := r.periodTicks(); p != 0 && r.dividing() && r.ram[RegB]&BPIE != 0 {
		j := ticks32k(r.seen-r.div)/p + 1
		// First ns at which ticks32k reaches j*p.
		n := j * p
		best, ok = r.div+n/hzBase*second+((n%hzBase)*second+hzBase-1)/hzBase, true
	}
	if r.updating() && r.ram[RegB]&(BUIE|BAIE) != 0 {
		next := r.upd + (floorDiv(r.seen-r.upd, second)+1)*second
		if !ok || next < best {
			best, ok = next, true
		}
	}
	return best, ok
}

// Poll implements devices.Timer.
func (r *RTC) Poll(now int64) { r.sync(now) }
