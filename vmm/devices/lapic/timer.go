package lapic

import (
	"math"
	"math/bits"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// The APIC timer (SDM Vol. 3A 11.5.4): it counts down from the initial
// count at BusHz divided by the divide configuration; one-shot stops at
// zero, periodic reloads, and TSC-deadline mode fires when the guest TSC
// reaches IA32_TSC_DEADLINE. Times are guest nanoseconds from the Clock;
// the count is computed from the time since it was loaded, so nothing
// runs between accesses. A fire sets the LVT timer vector in IRR unless
// the entry is masked; periods missed between polls are coalesced into
// one interrupt.

// mulDiv returns a×b/c (rounded up if ceil) with a 128-bit product,
// saturating at MaxInt64.
func mulDiv(a, b, c uint64, ceil bool) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, c)
	if ceil && rem != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return q
}

// divisor decodes the divide configuration register (Figure 11-10):
// bits 3,1,0 = 000 → 2, 001 → 4, ... 110 → 128, 111 → 1.
func (l *LAPIC) divisor() uint64 {
	code := l.r.timerDivide&3 | l.r.timerDivide>>1&4
	return 1 << ((code + 1) & 7)
}

func (l *LAPIC) timerMode() uint32 { return l.r.lvt[lvtTimer] & LVTTimerMode }

// ticksSince is the number of timer ticks from the load to now.
func (l *LAPIC) ticksSince(now int64) uint64 {
	if now <= l.r.timerStart {
		return 0
	}
	return mulDiv(uint64(now-l.r.timerStart), l.busHz, 1e9*l.divisor(), false)
}

// tickTime is the guest time at which tick t after the load is reached.
func (l *LAPIC) tickTime(t uint64) int64 {
	d := mulDiv(t, 1e9*l.divisor(), l.busHz, true)
	if d > uint64(math.MaxInt64-l.r.timerStart) {
		return math.MaxInt64
	}
	return l.r.timerStart + int64(d)
}

// deadline returns the guest time of the next timer event.
func (l *LAPIC) deadline() (int64, bool) {
	if l.timerMode() == TimerTSCDeadline {
		if l.r.tscDeadline == 0 {
			return 0, false
		}
		return int64(mulDiv(l.r.tscDeadline, 1e9, l.tscHz, true)), true
	}
	if !l.r.timerArmed {
		return 0, false
	}
	n := uint64(l.r.timerInitial)
	if l.timerMode() == TimerPeriodic {
		n *= l.r.timerPeriods + 1
	}
	return l.tickTime(n), true
}

// poll fires the timer if its deadline has passed; mu is held.
func (l *LAPIC) poll(now int64) {
	d, ok := l.deadline()
	if !ok || now < d {
		return
	}
	switch l.timerMode() {
	case TimerTSCDeadline:
		l.r.tscDeadline = 0
	case TimerPeriodic:
		l.r.timerPeriods = l.ticksSince(now) / uint64(l.r.timerInitial)
	default:
		l.r.timerArmed = false
	}
	if e := l.r.lvt[lvtTimer]; e&LVTMasked == 0 {
		l.acceptFixed(uint8(e&LVTVector), false)
	}
}

// currentCount is the timer current-count register.
func (l *LAPIC) currentCount(now int64) uint32 {
	if !l.r.timerArmed || l.timerMode() == TimerTSCDeadline {
		return 0
	}
	t, n := l.ticksSince(now), uint64(l.r.timerInitial)
	if l.timerMode() == TimerPeriodic {
		return uint32(n - t%n)
	}
	if t >= n {
		return 0
	}
	return uint32(n - t)
}

// loadTimer writes the initial-count register: a non-zero count starts
// the timer now, zero stops it. Ignored in TSC-deadline mode.
func (l *LAPIC) loadTimer(count uint32) {
	if l.timerMode() == TimerTSCDeadline {
		return
	}
	l.r.timerInitial = count
	l.r.timerStart = l.clock.Nanotime()
	l.r.timerPeriods = 0
	l.r.timerArmed = count != 0
}

// writeLVTTimer writes LVT timer; a mode change disarms the timer and
// clears IA32_TSC_DEADLINE (SDM Vol. 3A 11.5.4.1).
func (l *LAPIC) writeLVTTimer(v uint32) {
	old := l.timerMode()
	l.r.lvt[lvtTimer] = v
	if l.timerMode() != old {
		l.r.timerArmed = false
		l.r.tscDeadline = 0
	}
}

// writeDivide writes the divide configuration. A running count restarts
// from the initial count at the new rate (the SDM leaves a change while
// counting undefined; Linux programs the divider before the count).
func (l *LAPIC) writeDivide(v uint32) {
	l.r.timerDivide = v & tdcrWritable
	if l.r.timerArmed {
		l.r.timerStart, l.r.timerPeriods = l.clock.Nanotime(), 0
	}
}

// NextDeadline returns the guest time of the next timer event
// (devices.Timer).
func (l *LAPIC) NextDeadline() (int64, bool) {
	l.mu.Lock()
	defer l.unlock()
	return l.deadline()
}

// Poll fires the timer if it is due at now (devices.Timer).
func (l *LAPIC) Poll(now int64) {
	l.mu.Lock()
	defer l.unlock()
	l.poll(now)
}

var _ devices.Timer = (*LAPIC)(nil)
