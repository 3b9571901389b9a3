package serial

import (
	"bytes"
	"testing"
)

func newTest() (*Serial, *bytes.Buffer, *int) {
	var out bytes.Buffer
	n := 0
	return New(&out, func() { n++ }), &out, &n
}

func TestResetState(t *testing.T) {
	s, _, _ := newTest()
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
		if got := s.Read(c.reg); got != c.want {
			t.Errorf("%s: reg %d = %#x, want %#x", c.name, c.reg, got, c.want)
		}
	}
}

func TestTransmit(t *testing.T) {
	s, out, irqs := newTest()
	for _, b := range []byte("hi\n") {
		s.Write(THR, b)
	}
	if out.String() != "hi\n" || *irqs != 0 {
		t.Errorf("out %q, %d interrupts (none enabled)", out.String(), *irqs)
	}
	if s.Read(LSR)&(LSRTHREmpty|LSRTEMT) != LSRTHREmpty|LSRTEMT {
		t.Error("LSR not empty after output")
	}
}

func TestDLAB(t *testing.T) {
	s, out, _ := newTest()
	s.Write(LCR, LCRDLAB|LCR8N1)
	s.Write(DLL, 1) // 115200 baud
	s.Write(DLM, 0)
	if s.Read(DLL) != 1 || s.Read(DLM) != 0 || out.Len() != 0 {
		t.Errorf("divisor %d:%d, output %q: DLAB writes went elsewhere", s.Read(DLM), s.Read(DLL), out.String())
	}
	s.Write(LCR, LCR8N1)
	s.Write(THR, 'x')
	if s.Read(IER) != 0 || out.String() != "x" {
		t.Errorf("after DLAB off: IER %#x out %q", s.Read(IER), out.String())
	}
}

func TestTHREInterrupt(t *testing.T) {
	s, _, irqs := newTest()
	s.Write(IER, IERTHREmpty)
	if *irqs != 1 || s.Read(IIR) != IIRTHREmpty {
		t.Fatalf("enabling THRE: %d interrupts, want 1 with IIR=THRE", *irqs)
	}
	// Reading IIR acknowledged it.
	if s.Read(IIR) != IIRNoInterrupt {
		t.Error("THRE not acknowledged by the IIR read")
	}
	s.Write(THR, 'a')
	if *irqs != 2 || s.Read(IIR) != IIRTHREmpty {
		t.Errorf("after a byte: %d interrupts", *irqs)
	}
	s.Write(FCR, FCREnable)
	if got := s.Read(IIR); got != IIRNoInterrupt|IIRFIFOEnabled {
		t.Errorf("IIR with FIFOs on %#x", got)
	}
}

func TestReceiveAndLoopback(t *testing.T) {
	s, out, irqs := newTest()
	s.Write(IER, IERRxAvailable)
	if n := s.Enqueue([]byte("ok")); n != 2 || *irqs != 2 {
		t.Fatalf("enqueue %d, %d interrupts", n, *irqs)
	}
	if s.Read(LSR)&LSRDataReady == 0 || s.Read(IIR) != IIRRxAvailable {
		t.Error("data ready not reported")
	}
	if a, b := s.Read(RBR), s.Read(RBR); a != 'o' || b != 'k' {
		t.Errorf("read %q %q", a, b)
	}
	if s.Read(LSR)&LSRDataReady != 0 || s.Read(IIR) != IIRNoInterrupt {
		t.Error("data ready after draining")
	}
	s.Write(MCR, MCRLoopback|MCRDTR|MCROut2)
	s.Write(THR, 'L')
	if out.Len() != 0 || s.Read(RBR) != 'L' {
		t.Error("loopback byte went out instead of back")
	}
	if got := s.Read(MSR); got != MSRDSR|MSRDCD {
		t.Errorf("loopback MSR %#x, want DSR|DCD", got)
	}
	big := make([]byte, FIFOSize+5)
	s.Write(MCR, 0)
	if n := s.Enqueue(big); n != FIFOSize {
		t.Errorf("FIFO took %d, want %d", n, FIFOSize)
	}
	s.Write(FCR, FCREnable|FCRClearRx)
	if s.Read(LSR)&LSRDataReady != 0 {
		t.Error("FCR clear left data")
	}
}

func TestStateRoundTrip(t *testing.T) {
	s, _, _ := newTest()
	s.Write(SCR, 0x5A)
	s.Write(IER, IERRxAvailable)
	s.Enqueue([]byte("abc"))
	st := s.State()
	r, _, _ := newTest()
	r.FromState(st)
	if r.Read(SCR) != 0x5A || r.Read(IER) != IERRxAvailable || r.Read(RBR) != 'a' {
		t.Error("state not restored")
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
