package uart

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

func newTest() (*UART, *bytes.Buffer, *devtest.Line) {
	var out bytes.Buffer
	l := &devtest.Line{}
	return New(&out, l), &out, l
}

func TestResetState(t *testing.T) {
	u, _, irq := newTest()
	for _, c := range []struct {
		name string
		reg  uint8
		want byte
	}{
		{"IER off", IER, 0},
		{"IIR no interrupt", IIR, IIRNoInterrupt},
		{"LCR 8N1", LCR, LCR8N1},
		{"MCR DTR RTS OUT2", MCR, MCRDTR | MCRRTS | MCROut2},
		{"LSR THRE|TEMT: output never waits", LSR, LSRTHREmpty | LSRTEMT},
		{"MSR CTS|DSR|DCD: a connected peer", MSR, MSRCTS | MSRDSR | MSRDCD},
		{"RBR empty reads 0", RBR, 0},
	} {
		if got := u.Read(c.reg); got != c.want {
			t.Errorf("%s: reg %d = %#x, want %#x", c.name, c.reg, got, c.want)
		}
	}
	if irq.High {
		t.Error("interrupt high after reset")
	}
}

func TestTransmit(t *testing.T) {
	u, out, irq := newTest()
	for _, b := range []byte("hi\n") {
		u.Write(THR, b)
	}
	if out.String() != "hi\n" || irq.Rises != 0 {
		t.Errorf("out %q, %d interrupts (none enabled)", out.String(), irq.Rises)
	}
	if u.Read(LSR)&(LSRTHREmpty|LSRTEMT) != LSRTHREmpty|LSRTEMT {
		t.Error("LSR not empty after output")
	}
}

func TestDLAB(t *testing.T) {
	u, out, _ := newTest()
	u.Write(LCR, LCRDLAB|LCR8N1)
	u.Write(DLL, 1) // 115200 baud
	u.Write(DLM, 0)
	if u.Read(DLL) != 1 || u.Read(DLM) != 0 || out.Len() != 0 {
		t.Errorf("divisor %d:%d, output %q: DLAB writes went elsewhere", u.Read(DLM), u.Read(DLL), out.String())
	}
	u.Write(LCR, LCR8N1)
	u.Write(THR, 'x')
	if u.Read(IER) != 0 || out.String() != "x" {
		t.Errorf("after DLAB off: IER %#x out %q", u.Read(IER), out.String())
	}
}

func TestTHREInterrupt(t *testing.T) {
	u, _, irq := newTest()
	u.Write(IER, IERTHREmpty)
	if !irq.High || u.Read(IIR) != IIRTHREmpty {
		t.Fatalf("enabling THRE: line %v, want high with IIR=THRE", irq.High)
	}
	// Reading IIR acknowledged it.
	if u.Read(IIR) != IIRNoInterrupt || irq.High {
		t.Error("THRE not acknowledged by the IIR read")
	}
	u.Write(THR, 'a')
	if irq.Rises != 2 || u.Read(IIR) != IIRTHREmpty {
		t.Errorf("after a byte: %d rises", irq.Rises)
	}
	u.Write(FCR, FCREnable)
	if got := u.Read(IIR); got != IIRNoInterrupt|IIRFIFOEnabled {
		t.Errorf("IIR with FIFOs on %#x", got)
	}
	// Re-enabling IER.THRE with THR empty raises it again.
	u.Write(IER, 0)
	u.Write(IER, IERTHREmpty)
	if got := u.Read(IIR); got != IIRTHREmpty|IIRFIFOEnabled {
		t.Errorf("IIR after re-enable %#x", got)
	}
}

// A received byte must not hide a pending THRE interrupt: once the data is
// read, IIR reports THRE (the bug of the old model).
func TestIIRPriorities(t *testing.T) {
	u, _, irq := newTest()
	u.Write(IER, IERRxAvailable|IERTHREmpty|IERLineStatus|IERModemStatus)
	u.Receive('x')
	for i, step := range []struct {
		do   func()
		want byte
	}{
		{func() {}, IIRRxAvailable},
		{func() { u.Read(RBR) }, IIRTHREmpty},
		{func() {}, IIRNoInterrupt},                                // the previous IIR read acknowledged THRE
		{func() { u.Receive('a'); u.Receive('b') }, IIRLineStatus}, // overrun (FIFO off: one byte deep)
		{func() { u.Read(LSR) }, IIRRxAvailable},
		{func() { u.Read(RBR); u.Write(MCR, MCRLoopback|MCRDTR) }, IIRModemStatus},
		{func() { u.Read(MSR) }, IIRNoInterrupt},
		{func() { u.Write(FCR, FCREnable|2<<FCRTriggerShift); u.Enqueue([]byte("abc")) }, IIRCharTimeout},
		{func() { u.Enqueue([]byte("defgh")) }, IIRRxAvailable}, // 8 bytes: trigger level
	} {
		step.do()
		if got := u.Read(IIR) &^ IIRFIFOEnabled; got != step.want {
			t.Fatalf("step %d: IIR %#x, want %#x", i, got, step.want)
		}
	}
	if irq.High {
		t.Error("interrupt output high in loopback: OUT2 is held inactive")
	}
	u.Write(MCR, MCROut2)
	if !irq.High {
		t.Error("interrupt output low with data pending and OUT2 set")
	}
	u.Write(MCR, 0)
	if irq.High {
		t.Error("interrupt output high with OUT2 clear")
	}
}

func TestReceiveAndLoopback(t *testing.T) {
	u, out, irq := newTest()
	u.Write(FCR, FCREnable)
	u.Write(IER, IERRxAvailable)
	if n := u.Enqueue([]byte("ok")); n != 2 || irq.Rises != 1 {
		t.Fatalf("enqueue %d, %d interrupts", n, irq.Rises)
	}
	if u.Read(LSR)&LSRDataReady == 0 || u.Read(IIR) != IIRRxAvailable|IIRFIFOEnabled {
		t.Error("data ready not reported")
	}
	if a, b := u.Read(RBR), u.Read(RBR); a != 'o' || b != 'k' {
		t.Errorf("read %q %q", a, b)
	}
	if u.Read(LSR)&LSRDataReady != 0 || u.Read(IIR) != IIRNoInterrupt|IIRFIFOEnabled || irq.High {
		t.Error("data ready after draining")
	}
	u.Write(MCR, MCRLoopback|MCRDTR|MCROut2)
	u.Write(THR, 'L')
	if out.Len() != 0 || u.Read(RBR) != 'L' {
		t.Error("loopback byte went out instead of back")
	}
	if got := u.Read(MSR); got != MSRDSR|MSRDCD|MSRDCTS {
		t.Errorf("loopback MSR %#x, want DSR|DCD and the CTS delta", got)
	}
	if got := u.Read(MSR); got != MSRDSR|MSRDCD {
		t.Errorf("MSR %#x: deltas not cleared by the read", got)
	}
	big := make([]byte, FIFOSize+5)
	u.Write(MCR, 0)
	if n := u.Enqueue(big); n != FIFOSize {
		t.Errorf("FIFO took %d, want %d", n, FIFOSize)
	}
	u.Receive(1)
	if u.Overruns != 1 || u.Read(LSR)&LSROverrun == 0 || u.Read(LSR)&LSROverrun != 0 {
		t.Error("overrun not counted, or not reported once in LSR")
	}
	u.Write(FCR, FCREnable|FCRClearRx)
	if u.Read(LSR)&LSRDataReady != 0 {
		t.Error("FCR clear left data")
	}
}

func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	p := NewPrefixWriter(&b, "guest: ")
	p.Write([]byte("hel"))
	p.Write([]byte("lo\r\nworld\n"))
	p.Write([]byte("tail"))
	p.Flush()
	if want := "guest: hello\nguest: world\nguest: tail\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}

type subject struct {
	*UART
	out *bytes.Buffer
	irq *devtest.Line
}

const (
	opRead = iota
	opWrite
	opReceive
	opEnqueue
)

func (s subject) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case opRead:
		return uint64(s.PortIn(op.Offset, 1))
	case opWrite:
		s.PortOut(op.Offset, 1, op.Value)
	case opReceive:
		s.Receive(byte(op.Value))
	case opEnqueue:
		return uint64(s.Enqueue(bytes.Repeat([]byte{byte(op.Value)}, op.Size)))
	}
	return 0
}

func (s subject) Observe() string {
	o := fmt.Sprintf("irq %v out %q overruns %d", s.irq.High, s.out.String(), s.Overruns)
	s.out.Reset()
	return o
}

func genOp(r *rand.Rand) devtest.Op {
	op := devtest.Op{Kind: r.Intn(4), Offset: uint16(r.Intn(NumRegs)), Value: uint32(r.Intn(256)), Size: r.Intn(20)}
	if op.Kind == opWrite && op.Offset == LCR && r.Intn(2) == 0 {
		op.Value &^= LCRDLAB // spend most of the time with DLAB off
	}
	return op
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		devtest.SaveRestore(t, seed, 2000, func(*devtest.Clock) devtest.Subject {
			u, out, irq := newTest()
			return subject{u, out, irq}
		}, genOp)
	}
}

func FuzzRestore(f *testing.F) {
	u, _, _ := newTest()
	u.Write(FCR, FCREnable)
	u.Write(IER, 0x0F)
	u.Enqueue([]byte("seed"))
	blob, _ := u.Save()
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		u, _, _ := newTest()
		u.Write(SCR, 0x42)
		devtest.Restore(t, u, b)
	})
}
