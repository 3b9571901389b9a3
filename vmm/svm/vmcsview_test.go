package svm

import (
	"testing"

	"github.com/doppel-ft/doppel/vmm"
)

// TestVMCSView: vmm's handlers see the VMCB through VMCS fields with
// SVME hidden, VMX access rights, EVENTINJ halves and the interrupt
// window as V_IRQ plus the VINTR intercept.
func TestVMCSView(t *testing.T) {
	var page [512]uint64
	v := NewVMCB(&page)
	w := &vmcsView{v: v}
	if err := w.Write(vmm.GuestIA32EFER, EFER_LMA|1<<8); err != nil {
		t.Fatal(err)
	}
	if got := v.Get64(SaveEFER); got&EFER_SVME == 0 {
		t.Errorf("VMCB EFER %#x lacks SVME", got)
	}
	if got, _ := w.Read(vmm.GuestIA32EFER); got != EFER_LMA|1<<8 {
		t.Errorf("guest EFER %#x, want %#x (SVME hidden)", got, EFER_LMA|1<<8)
	}
	// A 64-bit code segment: VMX AR 0xA09B (L bit 13, G bit 15).
	if err := w.Write(vmm.GuestCSAccessRights, 0xA09B); err != nil {
		t.Fatal(err)
	}
	if a := v.Segment(SaveCS).Attrib; a != 0x9B|AttrL|AttrG {
		t.Errorf("CS attrib %#x", a)
	}
	if ar, _ := w.Read(vmm.GuestCSAccessRights); ar != 0xA09B {
		t.Errorf("CS AR back %#x", ar)
	}
	if ar, _ := w.Read(vmm.GuestLDTRAccessRights); ar != 1<<16 {
		t.Errorf("absent LDTR AR %#x, want unusable", ar)
	}
	if err := vmm.InjectException(w, vmm.VectorGP, true, 0x18); err != nil {
		t.Fatal(err)
	}
	if e := v.Get64(EventInj); e != 0x18<<32|EventInjValid|EventInjEV|3<<8|13 {
		t.Errorf("EVENTINJ %#x", e)
	}
	if err := w.Write(vmm.ProcBasedControls, vmm.ProcInterruptWindowExiting); err != nil {
		t.Fatal(err)
	}
	if v.Get64(VIntr)&VIntrVIRQ == 0 || v.Get32(InterceptMisc1)&InterceptVINTR == 0 {
		t.Errorf("window: V_INTR %#x, intercepts %#x", v.Get64(VIntr), v.Get32(InterceptMisc1))
	}
	if err := w.Write(vmm.ProcBasedControls, 0); err != nil {
		t.Fatal(err)
	}
	if v.Get64(VIntr)&VIntrVIRQ != 0 || v.Get32(InterceptMisc1)&InterceptVINTR != 0 {
		t.Errorf("no window: V_INTR %#x, intercepts %#x", v.Get64(VIntr), v.Get32(InterceptMisc1))
	}
	if _, err := w.Read(vmm.EPTPointer); err == nil {
		t.Error("EPTP read without error")
	}
}

// TestMSRPMBit: APM Vol. 2 15.11 table 15-4 offsets.
func TestMSRPMBit(t *testing.T) {
	for _, c := range []struct {
		msr  uint32
		byt  int
		bit  uint
		good bool
	}{{0x10, 4, 0, true}, {0xC000_0082, 0x800 + 0x20, 4, true}, {0xC001_0000, 0x1000, 0, true}, {0x4000_0000, 0, 0, false}} {
		b, bit, ok := msrpmBit(c.msr)
		if ok != c.good || ok && (b != c.byt || bit != c.bit) {
			t.Errorf("msr %#x: byte %#x bit %d ok %v", c.msr, b, bit, ok)
		}
	}
}
