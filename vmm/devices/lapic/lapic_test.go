package lapic

import (
	"encoding/binary"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Nanotime() int64 { return c.ns.Load() }
func (c *fakeClock) advance(d int64) { c.ns.Add(d) }

type msgRecorder struct{ msgs []devices.Message }

func (r *msgRecorder) Deliver(m devices.Message) { r.msgs = append(r.msgs, m) }

type eoiRecorder struct{ vectors []uint8 }

func (r *eoiRecorder) EOI(v uint8) { r.vectors = append(r.vectors, v) }

const testTSCHz = 2_000_000_000

func newTest(id uint32) (*LAPIC, *fakeClock, *msgRecorder, *eoiRecorder) {
	c, s, e := &fakeClock{}, &msgRecorder{}, &eoiRecorder{}
	l := New(Config{ID: id, BSP: id == 0, Clock: c, TSCHz: testTSCHz, Sink: s, EOI: []devices.EOIListener{e}})
	return l, c, s, e
}

func wr(l *LAPIC, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	l.MMIOWrite(off, b[:])
}

func rd(l *LAPIC, off uint64) uint32 {
	var b [4]byte
	l.MMIORead(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// enable software-enables l with spurious vector 0xFF.
func enable(l *LAPIC) { wr(l, RegSVR, SVREnable|0xFF) }

func TestResetState(t *testing.T) {
	l, _, _, _ := newTest(3)
	for _, tc := range []struct {
		off  uint64
		want uint32
	}{
		{RegID, 3 << 24},
		{RegVersion, 0x00050014},
		{RegTPR, 0},
		{RegPPR, 0},
		{RegLDR, 0},
		{RegDFR, 0xFFFFFFFF},
		{RegSVR, 0xFF},
		{RegLVTTimer, LVTMasked},
		{RegLVTLINT0, LVTMasked},
		{RegLVTError, LVTMasked},
		{RegTimerInitialCount, 0},
		{RegTimerCurrentCount, 0},
		{RegICRLow, 0},
	} {
		if got := rd(l, tc.off); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.off, got, tc.want)
		}
	}
	base, _ := l.ReadMSR(MSRAPICBase)
	if base != DefaultBase|APICBaseEnable {
		t.Errorf("IA32_APIC_BASE = %#x", base)
	}
	b, _, _, _ := newTest(0)
	if base, _ := b.ReadMSR(MSRAPICBase); base&APICBaseBSP == 0 {
		t.Errorf("BSP IA32_APIC_BASE = %#x, BSP bit clear", base)
	}
}

func TestSoftwareDisable(t *testing.T) {
	l, _, _, _ := newTest(1)
	wr(l, RegLVTLINT0, 0x700) // still disabled: the mask stays
	if got := rd(l, RegLVTLINT0); got != LVTMasked|0x700 {
		t.Errorf("LVT LINT0 written while disabled = %#x", got)
	}
	l.Deliver(devices.Message{Vector: 0x40})
	if _, ok := l.PendingVector(); ok {
		t.Error("a software-disabled APIC accepted a fixed interrupt")
	}
	enable(l)
	wr(l, RegLVTLINT0, 0x700)
	if got := rd(l, RegLVTLINT0); got != 0x700 {
		t.Errorf("LVT LINT0 = %#x, want 0x700", got)
	}
	wr(l, RegSVR, 0xFF) // disable again: every LVT masked
	if got := rd(l, RegLVTLINT0); got != LVTMasked|0x700 {
		t.Errorf("LVT LINT0 after disable = %#x", got)
	}
}

func TestPriority(t *testing.T) {
	l, _, _, _ := newTest(0)
	enable(l)
	l.Deliver(devices.Message{Vector: 0x31})
	l.Deliver(devices.Message{Vector: 0x52})
	if v, ok := l.PendingVector(); !ok || v != 0x52 {
		t.Fatalf("PendingVector = %#x %v, want 0x52", v, ok)
	}
	wr(l, RegTPR, 0x50) // class 5 masks 0x52
	if v, ok := l.PendingVector(); ok {
		t.Fatalf("PendingVector with TPR 0x50 = %#x", v)
	}
	if got := l.TPRThreshold(); got != 5 {
		t.Errorf("TPRThreshold = %d, want 5", got)
	}
	wr(l, RegTPR, 0x4F)
	v, ok := l.PendingVector()
	if !ok || v != 0x52 {
		t.Fatalf("PendingVector with TPR 0x4F = %#x %v", v, ok)
	}
	l.Ack(v)
	if got := rd(l, RegISR+0x20); got != 1<<(0x52-0x40) {
		t.Errorf("ISR[2] = %#x", got)
	}
	if got := rd(l, RegPPR); got != 0x50 {
		t.Errorf("PPR = %#x, want 0x50 (ISR class over TPR)", got)
	}
	if _, ok := l.PendingVector(); ok {
		t.Error("0x31 pending above an in-service 0x52")
	}
	wr(l, RegEOI, 0)
	if got := rd(l, RegPPR); got != 0x4F {
		t.Errorf("PPR after EOI = %#x, want 0x4F", got)
	}
	wr(l, RegTPR, 0)
	if v, ok := l.PendingVector(); !ok || v != 0x31 {
		t.Errorf("PendingVector after EOI = %#x %v, want 0x31", v, ok)
	}
	// Vectors below 16 are refused with a receive error.
	l.Deliver(devices.Message{Vector: 7})
	wr(l, RegESR, 0)
	if got := rd(l, RegESR); got != ESRReceiveIllegalVector {
		t.Errorf("ESR = %#x, want receive illegal vector", got)
	}
	wr(l, RegESR, 0)
	if got := rd(l, RegESR); got != 0 {
		t.Errorf("ESR after second write = %#x", got)
	}
}

func TestLevelEOIBroadcast(t *testing.T) {
	l, _, _, e := newTest(0)
	enable(l)
	l.Deliver(devices.Message{Vector: 0x60, Level: true})
	l.Deliver(devices.Message{Vector: 0x71})
	if got := rd(l, RegTMR+0x30); got != 1 {
		t.Errorf("TMR[3] = %#x, want bit 0", got)
	}
	if got := l.EOIExitBitmap(); got[1] != 1<<32 {
		t.Errorf("EOIExitBitmap = %#x", got)
	}
	if v, _ := l.PendingVector(); v != 0x71 {
		t.Fatalf("PendingVector = %#x, want 0x71", v)
	}
	l.Ack(0x71)
	wr(l, RegEOI, 0) // ends 0x71, edge
	if len(e.vectors) != 0 {
		t.Fatalf("edge EOI broadcast %v", e.vectors)
	}
	if v, _ := l.PendingVector(); v != 0x60 {
		t.Fatalf("PendingVector = %#x, want 0x60", v)
	}
	l.Ack(0x60)
	wr(l, RegEOI, 0) // ends 0x60, level
	if !reflect.DeepEqual(e.vectors, []uint8{0x60}) {
		t.Fatalf("EOI broadcast %v, want [0x60]", e.vectors)
	}
	wr(l, RegEOI, 0) // nothing in service
	if len(e.vectors) != 1 {
		t.Fatalf("spurious EOI broadcast %v", e.vectors)
	}
}

func TestICR(t *testing.T) {
	l, _, s, _ := newTest(2)
	enable(l)
	wr(l, RegICRHigh, 5<<24)
	wr(l, RegICRLow, ICRAssert|ICRDestLogical|0x45)
	want := []devices.Message{{Dest: 5, DestLogical: true, Vector: 0x45, Source: 2}}
	if !reflect.DeepEqual(s.msgs, want) {
		t.Fatalf("sent %+v, want %+v", s.msgs, want)
	}
	if got := rd(l, RegICRLow); got != ICRAssert|ICRDestLogical|0x45 {
		t.Errorf("ICR low = %#x", got)
	}
	s.msgs = nil
	// INIT assert, INIT level de-assert (not sent), SIPI to all but self.
	wr(l, RegICRLow, ShorthandAllButSelf<<18|ICRAssert|ICRLevel|5<<8)
	wr(l, RegICRLow, ShorthandAllButSelf<<18|ICRLevel|5<<8)
	wr(l, RegICRLow, ShorthandAllButSelf<<18|ICRAssert|6<<8|0x9A)
	want = []devices.Message{
		{Dest: 5, Mode: devices.DeliveryINIT, Shorthand: 3, Source: 2},
		{Dest: 5, Mode: devices.DeliveryStartup, Vector: 0x9A, Shorthand: 3, Source: 2},
	}
	if !reflect.DeepEqual(s.msgs, want) {
		t.Fatalf("sent %+v, want %+v", s.msgs, want)
	}
	s.msgs = nil
	// Self shorthand is accepted locally.
	wr(l, RegICRLow, ShorthandSelf<<18|0x77)
	if len(s.msgs) != 0 {
		t.Errorf("self IPI went to the sink: %+v", s.msgs)
	}
	if v, ok := l.PendingVector(); !ok || v != 0x77 {
		t.Errorf("self IPI pending = %#x %v", v, ok)
	}
	// An illegal vector is not sent.
	wr(l, RegICRLow, 0x05)
	wr(l, RegESR, 0)
	if len(s.msgs) != 0 || rd(l, RegESR) != ESRSendIllegalVector {
		t.Errorf("illegal vector: sent %+v, ESR %#x", s.msgs, rd(l, RegESR))
	}
}

func TestINITSIPI(t *testing.T) {
	l, _, _, _ := newTest(1)
	enable(l)
	wr(l, RegTPR, 0x20)
	l.Deliver(devices.Message{Mode: devices.DeliveryStartup, Vector: 0x10})
	if _, ok := l.TakeSIPI(); ok {
		t.Fatal("SIPI accepted without INIT")
	}
	l.Deliver(devices.Message{Mode: devices.DeliveryINIT})
	if !l.TakeINIT() || l.TakeINIT() {
		t.Fatal("TakeINIT not true exactly once")
	}
	if rd(l, RegTPR) != 0 || rd(l, RegSVR) != 0xFF || rd(l, RegID) != 1<<24 {
		t.Errorf("INIT did not reset the registers (TPR %#x SVR %#x ID %#x)", rd(l, RegTPR), rd(l, RegSVR), rd(l, RegID))
	}
	if !l.WaitingForSIPI() {
		t.Error("not waiting for SIPI after INIT")
	}
	l.Deliver(devices.Message{Mode: devices.DeliveryStartup, Vector: 0x9A})
	l.Deliver(devices.Message{Mode: devices.DeliveryStartup, Vector: 0x9B}) // second SIPI ignored
	if v, ok := l.TakeSIPI(); !ok || v != 0x9A {
		t.Errorf("TakeSIPI = %#x %v, want 0x9A", v, ok)
	}
	if _, ok := l.TakeSIPI(); ok {
		t.Error("second SIPI seen")
	}
}

func TestNMIAndLINT(t *testing.T) {
	l, _, _, _ := newTest(0)
	enable(l)
	l.Deliver(devices.Message{Mode: devices.DeliveryNMI})
	if !l.TakeNMI() || l.TakeNMI() {
		t.Fatal("NMI message: TakeNMI not true exactly once")
	}
	wr(l, RegLVTLINT1, uint32(devices.DeliveryNMI)<<8)
	l.LINT1().Set(true)
	l.LINT1().Set(true)
	if !l.TakeNMI() || l.TakeNMI() {
		t.Fatal("LINT1 edge: TakeNMI not true exactly once")
	}
	// LINT0 as virtual wire: ExtINT follows the level while unmasked.
	l.LINT0().Set(true)
	if l.ExtINTPending() {
		t.Error("ExtINT pending with LVT LINT0 masked")
	}
	wr(l, RegLVTLINT0, uint32(devices.DeliveryExtINT)<<8)
	if !l.ExtINTPending() {
		t.Error("ExtINT not pending with LINT0 high in ExtINT mode")
	}
	l.LINT0().Set(false)
	if l.ExtINTPending() {
		t.Error("ExtINT pending after LINT0 fell")
	}
	l.Deliver(devices.Message{Mode: devices.DeliveryExtINT})
	if !l.ExtINTPending() {
		t.Error("ExtINT message not pending")
	}
	l.AckExtINT()
	if l.ExtINTPending() {
		t.Error("ExtINT message pending after AckExtINT")
	}
	// LINT0 in fixed mode: a rising edge sets IRR.
	wr(l, RegLVTLINT0, 0x88)
	l.LINT0().Set(true)
	if v, ok := l.PendingVector(); !ok || v != 0x88 {
		t.Errorf("LINT0 fixed: PendingVector = %#x %v", v, ok)
	}
}

func TestX2APIC(t *testing.T) {
	l, _, s, e := newTest(0x23)
	if _, err := l.ReadMSR(0x802); !errors.Is(err, ErrGP) {
		t.Errorf("x2APIC MSR in xAPIC mode: err = %v, want ErrGP", err)
	}
	if err := l.WriteMSR(MSRAPICBase, DefaultBase|APICBaseExtd); !errors.Is(err, ErrGP) {
		t.Errorf("x2APIC without enable: err = %v", err)
	}
	if err := l.WriteMSR(MSRAPICBase, DefaultBase|APICBaseEnable|APICBaseExtd); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Base(); ok {
		t.Error("xAPIC page reachable in x2APIC mode")
	}
	for _, tc := range []struct {
		msr  uint32
		want uint64
	}{
		{0x802, 0x23},
		{0x803, 0x00050014},
		{0x80D, 2<<16 | 1<<3},
		{0x80F, 0xFF},
	} {
		if got, err := l.ReadMSR(tc.msr); err != nil || got != tc.want {
			t.Errorf("rdmsr %#x = %#x, %v; want %#x", tc.msr, got, err, tc.want)
		}
	}
	for _, msr := range []uint32{0x809, 0x80B, 0x80E, 0x831, 0x83F, 0x8FF} {
		if _, err := l.ReadMSR(msr); !errors.Is(err, ErrGP) {
			t.Errorf("rdmsr %#x: err = %v, want ErrGP", msr, err)
		}
	}
	for _, w := range []struct {
		msr uint32
		v   uint64
	}{{0x802, 1}, {0x80D, 1}, {0x80E, 0}, {0x80B, 1}, {0x808, 1 << 32}} {
		if err := l.WriteMSR(w.msr, w.v); !errors.Is(err, ErrGP) {
			t.Errorf("wrmsr %#x=%#x: err = %v, want ErrGP", w.msr, w.v, err)
		}
	}
	if err := l.WriteMSR(0x80F, SVREnable|0xFF); err != nil {
		t.Fatal(err)
	}
	// The 64-bit ICR: a 32-bit destination.
	if err := l.WriteMSR(MSRx2APICICR, 0x1234<<32|0x55); err != nil {
		t.Fatal(err)
	}
	want := []devices.Message{{Dest: 0x1234, Vector: 0x55, Source: 0x23}}
	if !reflect.DeepEqual(s.msgs, want) {
		t.Errorf("sent %+v, want %+v", s.msgs, want)
	}
	if v, _ := l.ReadMSR(MSRx2APICICR); v != 0x1234<<32|0x55 {
		t.Errorf("ICR = %#x", v)
	}
	// SELF IPI, level EOI via MSR 0x80B.
	if err := l.WriteMSR(0x83F, 0x66); err != nil {
		t.Fatal(err)
	}
	l.Deliver(devices.Message{Vector: 0x90, Level: true})
	v, _ := l.PendingVector()
	l.Ack(v)
	if err := l.WriteMSR(0x80B, 0); err != nil {
		t.Fatal(err)
	}
	v2, _ := l.PendingVector()
	if v != 0x90 || v2 != 0x66 {
		t.Errorf("pending %#x then %#x, want 0x90 then 0x66", v, v2)
	}
	if !reflect.DeepEqual(e.vectors, []uint8{0x90}) {
		t.Errorf("EOI broadcast %v", e.vectors)
	}
	if err := l.WriteMSR(MSRAPICBase, DefaultBase|APICBaseEnable); !errors.Is(err, ErrGP) {
		t.Errorf("x2APIC to xAPIC: err = %v, want ErrGP", err)
	}
	if err := l.WriteMSR(MSRAPICBase, DefaultBase); err != nil {
		t.Errorf("x2APIC to disabled: %v", err)
	}
}

func TestSyncPage(t *testing.T) {
	l, _, _, _ := newTest(4)
	enable(l)
	wr(l, RegTPR, 0x30)
	l.Deliver(devices.Message{Vector: 0x41})
	var p [4096]byte
	p[0x800] = 9
	l.SyncPage(&p)
	for _, tc := range []struct {
		off  int
		want uint32
	}{{RegID, 4 << 24}, {RegTPR, 0x30}, {RegSVR, 0x1FF}, {RegIRR + 0x20, 1 << 1}, {RegDFR, 0xFFFFFFFF}, {0x800, 0}} {
		if got := binary.LittleEndian.Uint32(p[tc.off:]); got != tc.want {
			t.Errorf("page %#x = %#x, want %#x", tc.off, got, tc.want)
		}
	}
	l.SetTPR(p[RegTPR] + 0x10)
	if got := rd(l, RegTPR); got != 0x40 {
		t.Errorf("TPR after SetTPR = %#x", got)
	}
}
