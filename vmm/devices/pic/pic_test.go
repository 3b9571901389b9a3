package pic

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

// linuxInit programs the pair the way Linux's init_8259A does: vectors
// 0x30 and 0x38, cascade on IR2, 8086 mode, all masked but the cascade.
func linuxInit(p *Pair, aeoi bool) {
	icw4 := uint32(ICW4UPM)
	if aeoi {
		icw4 |= ICW4AEOI
	}
	m, s := p.Master(), p.Slave()
	m.PortOut(0, 1, ICW1Init|ICW1IC4)
	m.PortOut(1, 1, 0x30)
	m.PortOut(1, 1, 1<<CascadeIRQ)
	m.PortOut(1, 1, icw4)
	s.PortOut(0, 1, ICW1Init|ICW1IC4)
	s.PortOut(1, 1, 0x38)
	s.PortOut(1, 1, CascadeIRQ)
	s.PortOut(1, 1, ICW4UPM)
	m.PortOut(1, 1, 0)
	s.PortOut(1, 1, 0)
}

func newPair(aeoi bool) (*Pair, *devtest.Line) {
	l := &devtest.Line{}
	p := New(l)
	linuxInit(p, aeoi)
	return p, l
}

func TestPriorityAndEOI(t *testing.T) {
	p, intr := newPair(false)
	m := p.Master()
	p.Pin(4).Set(true)
	p.Pin(1).Set(true)
	if !intr.High {
		t.Fatal("INTR low with requests")
	}
	if v := p.Acknowledge(); v != 0x31 {
		t.Fatalf("first vector %#x, want IRQ1 (0x31)", v)
	}
	if intr.High {
		t.Error("INTR high while IRQ1 is in service and IRQ4 is lower")
	}
	m.PortOut(0, 1, OCW3Select|OCW3RR|OCW3RIS)
	if isr := m.PortIn(0, 1); isr != 1<<1 {
		t.Errorf("ISR %#x", isr)
	}
	m.PortOut(0, 1, OCW3Select|OCW3RR)
	if irr := m.PortIn(0, 1); irr != 1<<4 {
		t.Errorf("IRR %#x", irr)
	}
	m.PortOut(0, 1, OCW2NonSpecificEOI)
	if !intr.High || p.Acknowledge() != 0x34 {
		t.Error("IRQ4 not delivered after EOI of IRQ1")
	}
	// Nothing left: spurious IRQ7, ISR untouched.
	m.PortOut(0, 1, OCW2SpecificEOI|4)
	if v := p.Acknowledge(); v != 0x37 {
		t.Errorf("spurious vector %#x", v)
	}
	m.PortOut(0, 1, OCW3Select|OCW3RR|OCW3RIS)
	if isr := m.PortIn(0, 1); isr != 0 {
		t.Errorf("ISR %#x after spurious", isr)
	}
}

func TestEdgeNeedsNewEdge(t *testing.T) {
	p, intr := newPair(false)
	p.Pin(0).Set(true)
	if p.Acknowledge() != 0x30 {
		t.Fatal("no IRQ0")
	}
	p.Master().PortOut(0, 1, OCW2NonSpecificEOI)
	if intr.High {
		t.Error("edge input still high re-requested without an edge")
	}
	p.Pin(0).Set(false)
	p.Pin(0).Set(true)
	if !intr.High {
		t.Error("new edge not seen")
	}
}

func TestMask(t *testing.T) {
	p, intr := newPair(false)
	p.Master().PortOut(1, 1, 1<<3)
	p.Pin(3).Set(true)
	if intr.High {
		t.Error("masked IRQ3 raised INTR")
	}
	if got := p.Master().PortIn(1, 1); got != 1<<3 {
		t.Errorf("IMR %#x", got)
	}
	p.Master().PortOut(1, 1, 0)
	if !intr.High || p.Acknowledge() != 0x33 {
		t.Error("unmasked IRQ3 not delivered")
	}
}

func TestCascadeAndLevel(t *testing.T) {
	p, intr := newPair(false)
	p.ELCR().PortOut(0, 2, 0xFFFF)
	if got := p.ELCR().PortIn(0, 2); got != 0xDEF8 {
		t.Errorf("ELCR %#x, want %#x (IRQ0-2, 8, 13 edge only)", got, 0xDEF8)
	}
	p.Pin(11).Set(true)
	if !intr.High {
		t.Fatal("slave request did not reach INTR")
	}
	if v := p.Acknowledge(); v != 0x3B {
		t.Fatalf("vector %#x, want 0x3B", v)
	}
	p.Slave().PortOut(0, 1, OCW2NonSpecificEOI)
	p.Master().PortOut(0, 1, OCW2NonSpecificEOI)
	if !intr.High {
		t.Error("level IRQ11 still high but no request after EOI")
	}
	// The request goes away before INTA: the master's edge-triggered IR2
	// stays latched, and the slave answers its spurious IR7.
	p.Pin(11).Set(false)
	if v := p.Acknowledge(); v != 0x3F {
		t.Errorf("vector %#x, want the slave's spurious 0x3F", v)
	}
	p.Slave().PortOut(0, 1, OCW3Select|OCW3RR|OCW3RIS)
	if isr := p.Slave().PortIn(0, 1); isr != 0 {
		t.Errorf("slave ISR %#x after its spurious IR7", isr)
	}
}

func TestAutoEOIAndPoll(t *testing.T) {
	p, intr := newPair(true)
	p.Pin(5).Set(true)
	p.Pin(6).Set(true)
	if p.Acknowledge() != 0x35 || !intr.High || p.Acknowledge() != 0x36 {
		t.Error("auto-EOI did not let IRQ6 through after IRQ5")
	}
	m := p.Master()
	m.PortOut(0, 1, OCW3Select|OCW3RR|OCW3RIS)
	if m.PortIn(0, 1) != 0 {
		t.Error("ISR set in auto-EOI mode")
	}
	p.Pin(3).Set(true)
	m.PortOut(0, 1, OCW3Select|OCW3Poll)
	if got := m.PortIn(0, 1); got != 0x83 {
		t.Errorf("poll word %#x, want 0x83", got)
	}
	m.PortOut(0, 1, OCW3Select|OCW3Poll)
	if got := m.PortIn(0, 1); got != 0 {
		t.Errorf("empty poll %#x", got)
	}
}

func TestRotation(t *testing.T) {
	p, _ := newPair(false)
	m := p.Master()
	m.PortOut(0, 1, OCW2SetPriority|4) // IR5 highest now
	p.Pin(3).Set(true)
	p.Pin(6).Set(true)
	if v := p.Acknowledge(); v != 0x36 {
		t.Errorf("vector %#x, want IRQ6 first with IR4 lowest", v)
	}
	m.PortOut(0, 1, OCW2RotateNonSpec) // IR6 becomes lowest
	if v := p.Acknowledge(); v != 0x33 {
		t.Errorf("vector %#x, want IRQ3", v)
	}
}

type subject struct {
	*Pair
	intr *devtest.Line
}

const (
	opIn = iota
	opOut
	opPin
	opAck
	opELCR
)

func (s subject) port(n uint16) interface {
	PortIn(uint16, int) uint32
	PortOut(uint16, int, uint32)
} {
	if n&2 == 0 {
		return s.Master()
	}
	return s.Slave()
}

func (s subject) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case opIn:
		return uint64(s.port(op.Offset).PortIn(op.Offset&1, 1))
	case opOut:
		s.port(op.Offset).PortOut(op.Offset&1, 1, op.Value)
	case opPin:
		s.Pin(int(op.Offset)).Set(op.Value&1 == 1)
	case opAck:
		return uint64(s.Acknowledge())
	case opELCR:
		s.ELCR().PortOut(op.Offset&1, 1, op.Value)
		return uint64(s.ELCR().PortIn(0, 2))
	}
	return 0
}

func (s subject) Observe() string { return fmt.Sprint(s.intr.High) }

func genOp(r *rand.Rand) devtest.Op {
	op := devtest.Op{Kind: r.Intn(5), Offset: uint16(r.Intn(4)), Value: uint32(r.Intn(256))}
	switch op.Kind {
	case opPin:
		op.Offset = uint16(r.Intn(16))
		if op.Offset == CascadeIRQ {
			op.Offset = 9
		}
	case opOut:
		if op.Offset&1 == 0 && r.Intn(4) != 0 {
			op.Value &^= ICW1Init // mostly OCWs, occasionally a re-init
		}
	case opELCR:
		if r.Intn(3) != 0 {
			op.Kind = opPin
			op.Offset = uint16(8 + r.Intn(8))
		}
	}
	return op
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		devtest.SaveRestore(t, seed, 2000, func(*devtest.Clock) devtest.Subject {
			p, l := newPair(seed%2 == 0)
			return subject{p, l}
		}, genOp)
	}
}

func FuzzRestore(f *testing.F) {
	p, _ := newPair(false)
	p.Pin(3).Set(true)
	p.Pin(10).Set(true)
	p.Acknowledge()
	blob, _ := p.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _ := newPair(true)
		p.Pin(4).Set(true)
		devtest.Restore(t, p, b)
	})
}
