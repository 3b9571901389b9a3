package rtc

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

var start = time.Date(2026, 12, 2, 17, 4, 59, 0, time.UTC) // a Wednesday

func newRTC() (*RTC, *devtest.Clock, *devtest.Line) {
	clk, l := &devtest.Clock{T: 5e9}, &devtest.Line{}
	return New(clk, l, start), clk, l
}

func get(r *RTC, i uint8) uint8 {
	r.PortOut(0, 1, uint32(i))
	return uint8(r.PortIn(1, 1))
}

func set(r *RTC, i, v uint8) {
	r.PortOut(0, 1, uint32(i))
	r.PortOut(1, 1, uint32(v))
}

func TestTimeFormats(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    uint8
		want [8]uint8 // sec min hour dow dom month year century
	}{
		{"BCD 24h", B24, [8]uint8{0x59, 0x04, 0x17, 4, 0x02, 0x12, 0x26, 0x20}},
		{"binary 24h", B24 | BDM, [8]uint8{59, 4, 17, 4, 2, 12, 26, 20}},
		{"BCD 12h", 0, [8]uint8{0x59, 0x04, 0x85, 4, 0x02, 0x12, 0x26, 0x20}},
		{"binary 12h", BDM, [8]uint8{59, 4, 0x85, 4, 2, 12, 26, 20}},
	} {
		r, _, _ := newRTC()
		set(r, RegB, tc.b)
		var got [8]uint8
		for i, reg := range []uint8{RegSeconds, RegMinutes, RegHours, RegDayOfWeek, RegDayOfMonth, RegMonth, RegYear, RegCentury} {
			got[i] = get(r, reg)
		}
		if got != tc.want {
			t.Errorf("%s: % x, want % x", tc.name, got, tc.want)
		}
	}
}

func TestTimeAdvancesAndSET(t *testing.T) {
	r, clk, _ := newRTC()
	clk.T += 1e9
	if s, m := get(r, RegSeconds), get(r, RegMinutes); s != 0 || m != 5 {
		t.Errorf("after a second: %x:%x, want 05:00", m, s)
	}
	// Set the time the way Linux's mc146818_set_time does.
	set(r, RegB, get(r, RegB)|BSET)
	set(r, RegHours, 0x23)
	set(r, RegMinutes, 0x59)
	set(r, RegSeconds, 0x58)
	clk.T += 10e9
	if s := get(r, RegSeconds); s != 0x58 {
		t.Errorf("time moved while SET: %x", s)
	}
	set(r, RegB, get(r, RegB)&^BSET)
	clk.T += 2e9
	if h, m, s, d := get(r, RegHours), get(r, RegMinutes), get(r, RegSeconds), get(r, RegDayOfMonth); h != 0 || m != 0 || s != 0 || d != 3 {
		t.Errorf("after midnight: day %x %x:%x:%x", d, h, m, s)
	}
	if dow := get(r, RegDayOfWeek); dow != 5 {
		t.Errorf("day of week %d, want Thursday (5)", dow)
	}
}

func TestUIP(t *testing.T) {
	r, clk, _ := newRTC()
	base := clk.T
	for _, tc := range []struct {
		at  int64
		uip bool
	}{{0, false}, {500e6, false}, {1e9 - 300e3, false}, {1e9 - 200e3, true}, {1e9, false}} {
		clk.T = base + tc.at
		if got := get(r, RegA)&AUIP != 0; got != tc.uip {
			t.Errorf("at %d ns: UIP %v", tc.at, got)
		}
	}
	if a := get(r, RegA) &^ AUIP; a != 0x26 {
		t.Errorf("register A %#x, want 0x26", a)
	}
	if d := get(r, RegD); d != DVRT {
		t.Errorf("register D %#x", d)
	}
}

func TestPeriodicInterrupt(t *testing.T) {
	r, clk, irq := newRTC()
	if _, ok := r.NextDeadline(); ok {
		t.Fatal("deadline with no interrupt enabled")
	}
	set(r, RegB, get(r, RegB)|BPIE) // RS=6: 1024 Hz
	dl, ok := r.NextDeadline()
	if want := clk.T + 976563; !ok || dl != want {
		t.Fatalf("deadline %d %v, want %d", dl, ok, want)
	}
	clk.T = dl - 1
	r.Poll(clk.T)
	if irq.High {
		t.Fatal("IRQ8 before the period")
	}
	clk.T = dl
	r.Poll(clk.T)
	if !irq.High {
		t.Fatal("IRQ8 low after the period")
	}
	if _, ok := r.NextDeadline(); ok {
		t.Error("deadline while IRQ8 is high")
	}
	if c := get(r, RegC); c != CIRQF|CPF {
		t.Errorf("register C %#x", c)
	}
	if irq.High || get(r, RegC) != 0 {
		t.Error("reading C did not clear it and lower IRQ8")
	}
	// A slower rate: RS=15 is 2 Hz.
	set(r, RegA, ADVNormal|15)
	dl, _ = r.NextDeadline()
	if dl-clk.T <= 0 || dl-clk.T > 500e6 {
		t.Errorf("2 Hz deadline %d ns away", dl-clk.T)
	}
}

func TestUpdateAndAlarm(t *testing.T) {
	r, clk, irq := newRTC()
	set(r, RegSecondsAlarm, 0x02)
	set(r, RegMinutesAlarm, 0x05)
	set(r, RegHoursAlarm, 0xC0) // any hour
	set(r, RegB, get(r, RegB)|BUIE|BAIE)
	dl, _ := r.NextDeadline()
	if dl != clk.T+1e9 {
		t.Fatalf("update deadline %d ns away", dl-clk.T)
	}
	clk.T = dl
	r.Poll(clk.T)
	// PF is set too: the default 1024 Hz rate runs, only PIE is off.
	if c := get(r, RegC); c != CIRQF|CUF|CPF || irq.High {
		t.Errorf("first update: C %#x", c)
	}
	clk.T += 2e9 // 17:05:02
	r.Poll(clk.T)
	if c := get(r, RegC); c != CIRQF|CUF|CAF|CPF {
		t.Errorf("alarm second: C %#x", c)
	}
	// Flags are set when disabled, but the line stays low.
	set(r, RegB, get(r, RegB)&^(BUIE|BAIE))
	clk.T += 1e9
	r.Poll(clk.T)
	if irq.High || get(r, RegC) != CUF|CPF {
		t.Error("disabled update flag: wrong line or C")
	}
}

func TestCMOSBytes(t *testing.T) {
	r, _, _ := newRTC()
	r.SetMemorySize(3<<30, 2<<30)
	for _, tc := range []struct {
		i    uint8
		want uint8
	}{
		{0x15, 0x80}, {0x16, 0x02}, // 640 KiB
		{0x17, 0xFF}, {0x18, 0xFF}, {0x30, 0xFF}, {0x31, 0xFF}, // capped
		{0x34, 0x00}, {0x35, 0xBF}, // (3 GiB - 16 MiB) / 64 KiB = 0xBF00
		{0x5B, 0x00}, {0x5C, 0x80}, {0x5D, 0x00}, // 2 GiB / 64 KiB = 0x8000
	} {
		if got := get(r, tc.i); got != tc.want {
			t.Errorf("CMOS %#x = %#x, want %#x", tc.i, got, tc.want)
		}
	}
	set(r, 0x40, 0xAB)
	r.PortOut(0, 1, IndexNMIDisable|0x40)
	if !r.NMIMasked() || r.PortIn(1, 1) != 0xAB {
		t.Error("NMI mask or RAM byte")
	}
	r.PortOut(0, 1, 0x40)
	if r.NMIMasked() {
		t.Error("NMI still masked")
	}
}

type subject struct {
	*RTC
	irq *devtest.Line
}

func (s subject) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case 0:
		return uint64(s.PortIn(1, 1))
	case 1:
		s.PortOut(0, 1, op.Value)
	case 2:
		s.PortOut(1, 1, op.Value)
	case 3:
		s.Poll(s.clock.Nanotime())
	case 4:
		d, ok := s.NextDeadline()
		if ok {
			return uint64(d)
		}
		return 1
	}
	return 0
}

func (s subject) Observe() string {
	o := fmt.Sprint(s.irq.High, s.irq.Rises, s.NMIMasked())
	s.irq.Rises = 0
	return o
}

func genOp(r *rand.Rand) devtest.Op {
	op := devtest.Op{Kind: r.Intn(5), Value: uint32(r.Intn(256))}
	if op.Kind == 1 && r.Intn(3) != 0 {
		op.Value = uint32(r.Intn(0x0E)) // mostly the clock registers
	}
	if op.Kind == 2 && r.Intn(4) == 0 {
		op.Value = uint32(ADVNormal | r.Intn(16)) // keep the divider running
	}
	op.Delta = r.Int63n(300e6)
	return op
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		devtest.SaveRestore(t, seed, 1500, func(clk *devtest.Clock) devtest.Subject {
			l := &devtest.Line{}
			return subject{New(clk, l, start), l}
		}, genOp)
	}
}

func FuzzRestore(f *testing.F) {
	r, clk, _ := newRTC()
	set(r, RegB, B24|BPIE|BUIE)
	clk.T += 3e9
	r.Poll(clk.T)
	blob, _ := r.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, clk, _ := newRTC()
		set(r, 0x20, 1)
		devtest.Restore(t, r, b)
		r.NextDeadline() // must not panic on any accepted state
		clk.T = 1 << 50
		r.Poll(clk.T)
		for i := uint8(0); i < 0x0E; i++ {
			get(r, i)
		}
	})
}
