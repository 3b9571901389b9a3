package lapic

import "testing"

func TestTimerOneShotPeriodic(t *testing.T) {
	l, c, _, _ := newTest(0)
	enable(l)
	wr(l, RegTimerDivide, 0x1) // divide by 4
	wr(l, RegLVTTimer, 0x30)   // one-shot
	wr(l, RegTimerInitialCount, 1000)
	if d, ok := l.NextDeadline(); !ok || d != 4000 {
		t.Fatalf("NextDeadline = %d %v, want 4000 (1000 ticks ÷4 at 1 GHz)", d, ok)
	}
	c.advance(1000)
	if got := rd(l, RegTimerCurrentCount); got != 750 {
		t.Errorf("current count at 1 µs = %d, want 750", got)
	}
	l.Poll(c.Nanotime())
	if _, ok := l.PendingVector(); ok {
		t.Error("timer fired early")
	}
	c.advance(3000)
	if v, ok := l.PendingVector(); !ok || v != 0x30 {
		t.Fatalf("one-shot not fired at its deadline: %#x %v", v, ok)
	}
	if _, ok := l.NextDeadline(); ok || rd(l, RegTimerCurrentCount) != 0 {
		t.Error("one-shot still armed after firing")
	}
	l.Ack(0x30)
	wr(l, RegEOI, 0)
	// Periodic, divide by 1: every 500 ns; missed periods coalesce.
	wr(l, RegTimerDivide, 0xB)
	wr(l, RegLVTTimer, TimerPeriodic|0x31)
	start := c.Nanotime()
	wr(l, RegTimerInitialCount, 500)
	c.advance(1700)
	if got := rd(l, RegTimerCurrentCount); got != 300 {
		t.Errorf("periodic current count = %d, want 300", got)
	}
	l.Poll(c.Nanotime())
	if d, _ := l.NextDeadline(); d != start+2000 {
		t.Errorf("periodic NextDeadline = %d, want %d", d, start+2000)
	}
	if v, ok := l.PendingVector(); !ok || v != 0x31 {
		t.Fatalf("periodic not fired: %#x %v", v, ok)
	}
	// Masked: counts, does not interrupt.
	l.Ack(0x31)
	wr(l, RegEOI, 0)
	wr(l, RegLVTTimer, TimerPeriodic|LVTMasked|0x31)
	c.advance(600)
	l.Poll(c.Nanotime())
	if v, ok := l.PendingVector(); ok {
		t.Errorf("masked timer delivered %#x", v)
	}
	// Initial count 0 stops it.
	wr(l, RegTimerInitialCount, 0)
	if _, ok := l.NextDeadline(); ok {
		t.Error("timer armed after a zero initial count")
	}
}

func TestTimerTSCDeadline(t *testing.T) {
	l, c, _, _ := newTest(0)
	enable(l)
	if err := l.WriteMSR(MSRTSCDeadline, 100); err != nil {
		t.Fatal(err)
	}
	if v, _ := l.ReadMSR(MSRTSCDeadline); v != 0 {
		t.Errorf("IA32_TSC_DEADLINE outside deadline mode = %d, want 0", v)
	}
	wr(l, RegLVTTimer, TimerTSCDeadline|0x40)
	wr(l, RegTimerInitialCount, 99) // ignored in deadline mode
	if rd(l, RegTimerInitialCount) != 0 {
		t.Error("initial count not ignored in TSC-deadline mode")
	}
	c.advance(1000) // TSC = 2000
	if err := l.WriteMSR(MSRTSCDeadline, 6000); err != nil {
		t.Fatal(err)
	}
	if d, ok := l.NextDeadline(); !ok || d != 3000 {
		t.Fatalf("NextDeadline = %d %v, want 3000", d, ok)
	}
	c.advance(1999)
	if _, ok := l.PendingVector(); ok {
		t.Fatal("deadline fired early")
	}
	c.advance(1)
	if v, ok := l.PendingVector(); !ok || v != 0x40 {
		t.Fatalf("deadline not fired: %#x %v", v, ok)
	}
	if v, _ := l.ReadMSR(MSRTSCDeadline); v != 0 {
		t.Errorf("IA32_TSC_DEADLINE after firing = %d", v)
	}
	// A deadline in the past fires at once; a mode change disarms.
	l.Ack(0x40)
	wr(l, RegEOI, 0)
	l.WriteMSR(MSRTSCDeadline, 1)
	if v, ok := l.PendingVector(); !ok || v != 0x40 {
		t.Errorf("past deadline not fired: %#x %v", v, ok)
	}
	l.WriteMSR(MSRTSCDeadline, 1<<40)
	wr(l, RegLVTTimer, 0x40)
	if _, ok := l.NextDeadline(); ok {
		t.Error("mode change left the timer armed")
	}
}
