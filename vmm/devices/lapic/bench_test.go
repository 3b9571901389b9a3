package lapic

import (
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// BenchmarkIPI is one fixed IPI through the Router and its handling at
// the target: x2APIC ICR write, PendingVector, Ack, EOI.
func BenchmarkIPI(b *testing.B) {
	r := NewRouter()
	c := &fakeClock{}
	var ls [2]*LAPIC
	for i := range ls {
		ls[i] = New(Config{ID: uint32(i), Clock: c, TSCHz: testTSCHz, Sink: r})
		ls[i].WriteMSR(MSRAPICBase, DefaultBase|APICBaseEnable|APICBaseExtd)
		ls[i].WriteMSR(0x80F, SVREnable|0xFF)
		r.Add(ls[i])
	}
	b.ReportAllocs()
	for b.Loop() {
		ls[0].WriteMSR(MSRx2APICICR, 1<<32|0x40)
		v, ok := ls[1].PendingVector()
		if !ok {
			b.Fatal("IPI lost")
		}
		ls[1].Ack(v)
		ls[1].WriteMSR(0x80B, 0)
	}
}

// BenchmarkInject is the vCPU's per-entry check with one interrupt: a
// Deliver (from the IOAPIC), PendingVector, Ack and an MMIO EOI.
func BenchmarkInject(b *testing.B) {
	l, _, _, _ := newTest(0)
	enable(l)
	m := devices.Message{Vector: 0x41}
	b.ReportAllocs()
	for b.Loop() {
		l.Deliver(m)
		v, _ := l.PendingVector()
		l.Ack(v)
		wr(l, RegEOI, 0)
	}
}

// BenchmarkPendingNone is the common case: nothing pending.
func BenchmarkPendingNone(b *testing.B) {
	l, _, _, _ := newTest(0)
	enable(l)
	for b.Loop() {
		if _, ok := l.PendingVector(); ok {
			b.Fatal("pending")
		}
	}
}
