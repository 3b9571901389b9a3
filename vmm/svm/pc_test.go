package svm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
)

// hostPCCPU is a PCCPU on a VMCB in ordinary memory, for the host tests
// of its saved state; tsc is its host TSC.
func hostPCCPU(tsc *uint64) *PCCPU {
	vm := NewVMCB(new([512]uint64))
	view := &vmcsView{v: vm}
	clock := &vmm.TSCClock{Hz: 1_000_000_000, Read: func() uint64 { return *tsc }}
	// The debug registers are pending a load, as after creation: the
	// host cannot read the CPU's (MOV from DRn is for ring 0).
	c := &PCCPU{HW: &HWVCPU{VMCB: vm}, view: view, fx: vmm.NewFXState(), cfg: PCConfig{Clock: clock},
		debug: vmm.NewGuestDebugRegs()}
	c.msr = vmm.NewGuestMSRs(view, nil, true)
	c.V = &vmm.VCPU{VMCS: view, MSRs: c.msr, XCR0: vmm.XCR0_X87}
	return c
}

// mapVMCS is a VMCS in a map: the VT-x side of a cross-vendor restore.
type mapVMCS map[vmm.Field]uint64

func (m mapVMCS) Read(f vmm.Field) (uint64, error) { return m[f], nil }
func (m mapVMCS) Write(f vmm.Field, v uint64) error {
	m[f] = v
	return nil
}

// userState puts a 64-bit guest at CPL 3 in the VMCB, with syscall MSRs,
// a queued exception and an interrupt shadow.
func userState(c *PCCPU) {
	vm := c.HW.VMCB
	vm.SetSegment(SaveCS, Segment{Selector: 0x33, Attrib: 0xFB | AttrL, Limit: 0xFFFF_FFFF})
	vm.SetSegment(SaveSS, Segment{Selector: 0x2B, Attrib: 0xF3, Limit: 0xFFFF_FFFF})
	vm.SetSegment(SaveTR, Segment{Selector: 0x40, Attrib: 0x8B, Limit: 0x67, Base: 0xFFFF_FE00_0000_3000})
	vm.SetSegment(SaveGDTR, Segment{Limit: 0x7F, Base: 0xFFFF_FE00_0000_1000})
	vm.Set8(SaveCPL, 3)
	vm.Set64(SaveCR0, 0x8005_0033)
	vm.Set64(SaveCR3, 0x1234_5000)
	vm.Set64(SaveCR4, 0x3506F0)
	vm.Set64(SaveEFER, EFER_SVME|EFER_LMA|1<<8|1<<11|1)
	vm.Set64(SaveRIP, 0x40_1000)
	vm.Set64(SaveRSP, 0x7FFF_F000)
	vm.Set64(SaveRFLAGS, 0x246)
	vm.Set64(SaveLSTAR, 0xFFFF_FFFF_8100_0000)
	vm.Set64(SaveSTAR, 0x23_0010_0000_0000)
	vm.Set64(SaveKernelGSBase, 0xFFFF_8880_0F00_0000)
	vm.Set64(SaveSFMASK, 0x47700)
	vm.Set64(EventInj, uint64(vmm.VectorGP)|vmm.IntTypeHWException|vmm.IntInfoErrorCode|vmm.IntInfoValid|0x18<<32)
	vm.Set64(InterruptShadow, InterruptShadow0)
	vm.Set64(SaveCR2, 0x7F12_3456_7008) // paused between a #PF and its read of CR2
	vm.Set64(SaveDR6, 0xFFFF_4FF0)      // BS: a single step was reported
	c.V.Regs.RAX, c.V.Regs.R15 = 0xAAAA, 0xF15
	c.debug.Regs.DR = [4]uint64{0x40_1000, 0x7FFF_EFF8, 0, 0xFFFF_FFFF_8100_0040} // hardware breakpoints set
	c.fx.Guest[100] = 0x5A
	c.V.XCR0 = vmm.XCR0_X87
}

// TestPCCPUSaveFormat: a PC vCPU under AMD-V saves VT-x's encoding
// (vmm.SaveVCPUState), and its state comes back exactly in another vCPU,
// its TSC continuing.
func TestPCCPUSaveFormat(t *testing.T) {
	tsc := uint64(5_000_000)
	src := hostPCCPU(&tsc)
	userState(src)
	blob, err := src.Save()
	if err != nil {
		t.Fatal(err)
	}
	// The same encoding as VT-x: decodable by vmm.RestoreVCPUState into
	// any VMCS, and equal to what SaveVCPUState makes from that VMCS.
	vmx := mapVMCS{}
	var frame [512]uint64
	st := &vmm.VCPUState{MSRArea: vmm.NewMSRArea(&frame, vmm.SwitchedMSRs, make([]uint64, len(vmm.SwitchedMSRs))), MSRs: vmm.NewGuestMSRs(vmx, nil, true)}
	if err := vmm.RestoreVCPUState(vmx, blob, st); err != nil {
		t.Fatalf("VT-x's decoder refuses the SVM blob: %v", err)
	}
	if again, err := vmm.SaveVCPUState(vmx, st); err != nil || !bytes.Equal(again, blob) {
		t.Errorf("VT-x's encoder gives another blob for the same state (err %v)", err)
	}
	if lstar, _ := st.MSRArea.Get(vmm.IA32_LSTAR); lstar != 0xFFFF_FFFF_8100_0000 || vmx[vmm.VMEntryControls] != vmm.EntryIA32eModeGuest {
		t.Errorf("LSTAR %#x, entry controls %#x in the neutral state", lstar, vmx[vmm.VMEntryControls])
	}
	if ar := vmx[vmm.GuestCSAccessRights]; ar != 0x20FB {
		t.Errorf("CS access rights %#x, want VMX's 0x20FB (L set)", ar)
	}

	savedTSC := src.cfg.Clock.GuestTSC()
	tsc = 9_000_000 // the restore happens later, on another host TSC
	dst := hostPCCPU(&tsc)
	if err := dst.Restore(blob); err != nil {
		t.Fatal(err)
	}
	a, b := src.HW.VMCB, dst.HW.VMCB
	for _, off := range []int{SaveCR0, SaveCR3, SaveCR4, SaveEFER, SaveRIP, SaveRSP, SaveRFLAGS,
		SaveLSTAR, SaveSTAR, SaveKernelGSBase, SaveSFMASK, EventInj, InterruptShadow, SaveCR2, SaveDR6} {
		if a.Get64(off) != b.Get64(off) {
			t.Errorf("VMCB %#x: %#x restored as %#x", off, a.Get64(off), b.Get64(off))
		}
	}
	for _, off := range []int{SaveCS, SaveSS, SaveTR, SaveGDTR, SaveDS, SaveLDTR} {
		if a.Segment(off) != b.Segment(off) {
			t.Errorf("segment %#x: %+v restored as %+v", off, a.Segment(off), b.Segment(off))
		}
	}
	if b.Get8(SaveCPL) != 3 || dst.V.Regs != src.V.Regs || dst.fx.Guest != src.fx.Guest || dst.V.XCR0 != src.V.XCR0 {
		t.Errorf("CPL %d, registers, x87/SSE image or XCR0 differ", b.Get8(SaveCPL))
	}
	if dst.debug.Regs.DR != src.debug.Regs.DR || !dst.debug.Pending {
		t.Errorf("DR0-DR3 %#x restored as %#x (to load before the next VMRUN: %v)", src.debug.Regs.DR, dst.debug.Regs.DR, dst.debug.Pending)
	}
	if got := dst.cfg.Clock.GuestTSC(); got != savedTSC {
		t.Errorf("guest TSC %d after restore, want %d (as saved)", got, savedTSC)
	}
	if !dst.HW.flush {
		t.Error("no TLB flush asked for after restore")
	}
	if again, _ := dst.Save(); !bytes.Equal(again, blob) {
		t.Error("saving the restored vCPU gives another blob")
	}
}

// TestPCCPURestoreFromVMX: a state as VT-x's VMXCPU saves it (CR4 with
// VMXE, stale read shadows, "IA-32e mode guest" in the entry controls)
// restores under AMD-V with the guest's own control registers.
func TestPCCPURestoreFromVMX(t *testing.T) {
	vmx := mapVMCS{
		vmm.GuestCR0: 0x8005_0033, vmm.CR0ReadShadow: 0x10, // the mask is 0: the shadow is stale
		vmm.GuestCR4: 0x3506F0 | vmm.CR4_VMXE, vmm.CR4ReadShadow: 0x3506F0,
		vmm.GuestIA32EFER: EFER_LMA | 1<<8 | 1<<11 | 1, vmm.VMEntryControls: vmm.EntryIA32eModeGuest | 1<<2 | 1<<15,
		vmm.GuestCSAccessRights: 0xA09B, vmm.GuestSSAccessRights: 0xC093, vmm.GuestLDTRAccessRights: 1 << 16,
		vmm.GuestRIP: 0xFFFF_FFFF_8100_1234, vmm.GuestRFLAGS: 0x202, vmm.GuestInterruptibilityState: vmm.BlockingByMOVSS,
	}
	var frame [512]uint64
	lstar := []uint64{0x10, 0xFFFF_FFFF_8100_0000, 0x30, 0x40, 0x50, 0x60}
	st := &vmm.VCPUState{MSRArea: vmm.NewMSRArea(&frame, vmm.SwitchedMSRs, lstar), MSRs: vmm.NewGuestMSRs(vmx, nil, true), GuestTSC: 777,
		XSave: vmm.NewXSaveArea(vmm.XSaveMinSize), XCR0: vmm.XCR0_X87}
	st.Regs.RBX = 0xBB
	blob, err := vmm.SaveVCPUState(vmx, st)
	if err != nil {
		t.Fatal(err)
	}
	tsc := uint64(1 << 40)
	c := hostPCCPU(&tsc)
	dr6 := c.HW.VMCB.Get64(SaveDR6)
	c.HW.VMCB.Set64(SaveCR2, 0xBAD0_0000)
	if err := c.Restore(blob); err != nil {
		t.Fatal(err)
	}
	vm := c.HW.VMCB
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"CR0", vm.Get64(SaveCR0), 0x8005_0033},
		{"CR4", vm.Get64(SaveCR4), 0x3506F0},
		{"EFER", vm.Get64(SaveEFER), EFER_SVME | EFER_LMA | 1<<8 | 1<<11 | 1},
		{"RIP", vm.Get64(SaveRIP), 0xFFFF_FFFF_8100_1234},
		{"CS attrib", uint64(vm.Segment(SaveCS).Attrib), 0x9B | AttrL | AttrG},
		{"LDTR attrib", uint64(vm.Segment(SaveLDTR).Attrib), 0},
		{"CPL", uint64(vm.Get8(SaveCPL)), 0},
		{"interrupt shadow", vm.Get64(InterruptShadow), InterruptShadow0},
		{"LSTAR", vm.Get64(SaveLSTAR), 0xFFFF_FFFF_8100_0000},
		{"KernelGSBase", vm.Get64(SaveKernelGSBase), 0x50},
		{"RBX", c.V.Regs.RBX, 0xBB},
		{"guest TSC", c.cfg.Clock.GuestTSC(), 777},
		{"CR2", vm.Get64(SaveCR2), 0},
		{"DR6 (VT-x saves none: the vCPU's own)", vm.Get64(SaveDR6), dr6},
	} {
		if f.got != f.want {
			t.Errorf("%s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
}

// TestPCCPURestoreBad: a damaged blob is refused with ErrBadState and
// changes nothing.
func TestPCCPURestoreBad(t *testing.T) {
	tsc := uint64(1000)
	c := hostPCCPU(&tsc)
	userState(c)
	blob, err := c.Save()
	if err != nil {
		t.Fatal(err)
	}
	before := *c.HW.VMCB.b
	regs := c.V.Regs
	for _, bad := range [][]byte{nil, blob[:len(blob)/2], append(append([]byte{}, blob[:4]...), 0xFF)} {
		if err := c.Restore(bad); !errors.Is(err, devices.ErrBadState) {
			t.Errorf("Restore of %d bytes: %v, want ErrBadState", len(bad), err)
		}
		if *c.HW.VMCB.b != before || c.V.Regs != regs {
			t.Fatalf("a refused restore changed the vCPU")
		}
	}
}

// haltSource is a LAPIC's NMI, INIT and SIPI as a parked vCPU sees them.
type haltSource struct{ nmi, init bool }

func (h *haltSource) TakeINIT() bool {
	x := h.init
	h.init = false
	return x
}
func (h *haltSource) TakeSIPI() (uint8, bool) { return 0, false }
func (h *haltSource) TakeNMI() bool {
	x := h.nmi
	h.nmi = false
	return x
}
func (h *haltSource) WakePending() bool { return h.nmi || h.init }

// TestPCCPUHaltWithInterruptsOff: HLT with IF clear parks the vCPU (as
// under VT-x, so that Linux's stop_this_cpu on one vCPU does not stop the
// machine while another powers off); the park survives a save and
// restore; an NMI wakes it with the NMI injected, an INIT makes it wait
// for SIPI.
func TestPCCPUHaltWithInterruptsOff(t *testing.T) {
	for _, wake := range []string{"NMI", "INIT"} {
		t.Run(wake, func(t *testing.T) {
			tsc := uint64(1000)
			c := hostPCCPU(&tsc)
			hs := &haltSource{}
			c.cfg.SIPI = hs
			c.kickCh = make(chan struct{}, 1)
			c.HW.VMCB.Set64(SaveRFLAGS, 0x2) // IF clear
			if act, err := c.halt(c.V); act != vmm.ActionPark || err != nil {
				t.Fatalf("halt with IF clear: %v, %v; want park", act, err)
			}
			blob, err := c.Save()
			if err != nil {
				t.Fatal(err)
			}
			c = hostPCCPU(&tsc)
			c.cfg.SIPI = hs
			c.kickCh = make(chan struct{}, 1)
			if err := c.Restore(blob); err != nil {
				t.Fatal(err)
			}
			// Restored parked: the first Step reports the park, the next
			// ones wait for a wake-up.
			for i := range 2 {
				if act, err := c.Step(); act != vmm.ActionPark || err != nil {
					t.Fatalf("step %d of a restored parked vCPU: %v, %v", i, act, err)
				}
			}
			if c.WakePending() {
				t.Fatal("wake-up pending before any")
			}
			if wake == "NMI" {
				hs.nmi = true
			} else {
				hs.init = true
			}
			if !c.WakePending() {
				t.Fatal("no wake-up pending")
			}
			if act, err := c.Step(); act != vmm.ActionResume || err != nil {
				t.Fatalf("step after %s: %v, %v", wake, act, err)
			}
			inj := c.HW.VMCB.Get64(EventInj)
			if wake == "NMI" && inj != uint64(vmm.VectorNMI)|vmm.IntTypeNMI|EventInjValid {
				t.Errorf("EVENTINJ %#x after NMI, want the NMI", inj)
			}
			if wake == "INIT" && !c.waitSIPI {
				t.Error("INIT did not make the vCPU wait for SIPI")
			}
			if c.haltedOff {
				t.Error("still halted")
			}
		})
	}
}

// TestPCCPUShutdownReport: a shutdown #VMEXIT (the guest triple-faulted)
// stops the guest with vmm's TripleFaultError, and the error carries the
// guest state and the exits before it, the event doppel injected last
// among them.
func TestPCCPUShutdownReport(t *testing.T) {
	tsc := uint64(1000)
	c := hostPCCPU(&tsc)
	userState(c)
	inj := uint64(0xEC) | EventInjValid
	for i := range historyLen + 3 {
		c.history[c.next] = exitRecord{code: ExitIntr, rip: 0x1000 + uint64(i), rsp: 0x8000, rflags: 0x246}
		if i == historyLen+1 {
			c.history[c.next] = exitRecord{injected: inj, code: ExitIOIO, rip: 0xFFFF_FFFF_8100_1EF0, intInfo: 0x80000B0E | 2<<32}
		}
		c.next = (c.next + 1) % historyLen
	}
	act, err := c.dispatch(&Exit{Code: ExitShutdown, RIP: 0xFFFF_FFFF_8180_1EF0})
	if act != vmm.ActionStop || !errors.Is(err, vmm.ErrTripleFault) {
		t.Fatalf("shutdown exit: %v, %v; want stop with a triple fault", act, err)
	}
	var tf *vmm.TripleFaultError
	if !errors.As(err, &tf) || tf.RIP != 0xFFFF_FFFF_8180_1EF0 {
		t.Errorf("error %v: want the TripleFaultError at the exit's RIP", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"cpl 3 ", "cr3 0x12345000", "tr 0x40/0x8b/0xfffffe0000003000/0x67",
		"[inj 0x800000ec] IOIO rip 0xffffffff81001ef0", "exitintinfo 0x280000b0e",
		"INTR rip 0x1003 ", // the oldest kept: 19 exits went into 16 slots
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "INTR rip 0x1002 ") {
		t.Errorf("report keeps more than %d exits:\n%s", historyLen, msg)
	}
}
