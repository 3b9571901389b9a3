package vmm

import (
	"testing"
)

// fakeAPIC holds pending vectors; the highest is delivered first.
type fakeAPIC struct {
	irr      map[uint8]bool
	accepted []uint8
}

func (a *fakeAPIC) InterruptPending() bool { return len(a.irr) > 0 }

func (a *fakeAPIC) TakeInterrupt() (uint8, bool) {
	v, ok := a.highest()
	if ok {
		delete(a.irr, v)
		a.accepted = append(a.accepted, v)
	}
	return v, ok
}

func (a *fakeAPIC) highest() (uint8, bool) {
	best, ok := uint8(0), false
	for v := range a.irr {
		if !ok || v > best {
			best, ok = v, true
		}
	}
	return best, ok
}

func TestInjectorPrepareEntry(t *testing.T) {
	for _, tc := range []struct {
		name       string
		irr        []uint8
		rflags     uint64
		intr       uint64 // interruptibility state
		pending    uint64 // an event already queued for this entry
		wantInfo   uint64
		wantWindow bool
		accepted   []uint8
	}{
		{"nothing pending", nil, RFLAGS_IF, 0, 0, 0, false, nil},
		{"inject", []uint8{0x30}, RFLAGS_IF, 0, 0, 0x30 | IntInfoValid, false, []uint8{0x30}},
		{"inject highest, window for the next", []uint8{0x30, 0xEF}, RFLAGS_IF, 0, 0, 0xEF | IntInfoValid, true, []uint8{0xEF}},
		{"IF=0 waits for the window", []uint8{0x30}, 0, 0, 0, 0, true, nil},
		{"STI shadow waits", []uint8{0x30}, RFLAGS_IF, BlockingBySTI, 0, 0, true, nil},
		{"MOV SS shadow waits", []uint8{0x30}, RFLAGS_IF, BlockingByMOVSS, 0, 0, true, nil},
		{"queued exception goes first", []uint8{0x30}, RFLAGS_IF, 0, VectorGP | IntTypeHWException | IntInfoValid,
			VectorGP | IntTypeHWException | IntInfoValid, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apic := &fakeAPIC{irr: map[uint8]bool{}}
			for _, v := range tc.irr {
				apic.irr[v] = true
			}
			vmcs := fakeVMCS{GuestRFLAGS: tc.rflags | 2, GuestInterruptibilityState: tc.intr, VMEntryInterruptionInfo: tc.pending}
			j := &Injector{Source: apic, Proc: ProcHLTExiting | ProcInterruptWindowExiting}
			if err := j.PrepareEntry(vmcs); err != nil {
				t.Fatal(err)
			}
			if vmcs[VMEntryInterruptionInfo] != tc.wantInfo {
				t.Errorf("entry interruption info = %#x, want %#x", vmcs[VMEntryInterruptionInfo], tc.wantInfo)
			}
			if got := j.Proc&ProcInterruptWindowExiting != 0; got != tc.wantWindow {
				t.Errorf("interrupt-window exiting = %v, want %v", got, tc.wantWindow)
			}
			if w, ok := vmcs[ProcBasedControls]; ok && uint32(w) != j.Proc || j.Proc&ProcHLTExiting == 0 {
				t.Errorf("controls in VMCS %#x, Injector %#x", w, j.Proc)
			}
			if len(apic.accepted) != len(tc.accepted) || len(tc.accepted) > 0 && apic.accepted[0] != tc.accepted[0] {
				t.Errorf("accepted %v, want %v", apic.accepted, tc.accepted)
			}
		})
	}
}

func TestRequeueIDTVectoring(t *testing.T) {
	for _, tc := range []struct {
		name               string
		info, code, instr  uint64
		want               bool
		wantInfo, wantCode uint64
		wantLen            uint64
	}{
		{"none", 0, 0, 0, false, 0, 0, 0},
		{"external interrupt", 0x30 | IntInfoValid | 1<<12, 0, 0, true, 0x30 | IntInfoValid, 0, 0},
		{"page fault with code", VectorPF | IntTypeHWException | IntInfoErrorCode | IntInfoValid, 6, 0, true,
			VectorPF | IntTypeHWException | IntInfoErrorCode | IntInfoValid, 6, 0},
		{"int 0x80", 0x80 | IntTypeSWInterrupt | IntInfoValid, 0, 2, true, 0x80 | IntTypeSWInterrupt | IntInfoValid, 0, 2},
	} {
		vmcs := fakeVMCS{IDTVectoringInfo: tc.info, IDTVectoringErrorCode: tc.code, VMExitInstructionLength: tc.instr}
		got, err := RequeueIDTVectoring(vmcs)
		if err != nil || got != tc.want || vmcs[VMEntryInterruptionInfo] != tc.wantInfo ||
			vmcs[VMEntryExceptionErrorCode] != tc.wantCode || vmcs[VMEntryInstructionLength] != tc.wantLen {
			t.Errorf("%s: %v %v, entry info %#x code %d len %d", tc.name, got, err,
				vmcs[VMEntryInterruptionInfo], vmcs[VMEntryExceptionErrorCode], vmcs[VMEntryInstructionLength])
		}
	}
}

func TestMSRExits(t *testing.T) {
	v, _ := newTestVCPU(t)
	g, _, _ := newTestMSRs(true)
	v.MSRs = g
	vmcs := v.VMCS.(fakeVMCS)
	e := &Exit{Reason: ExitReasonField(ExitRDMSR), RIP: 0x1000, InstrLen: 2}
	v.Regs.RCX = IA32_APIC_BASE
	if act, err := Dispatch(v, e); act != ActionResume || err != nil || v.Regs.RAX != 0xFEE0_0900 || v.Regs.RDX != 0 || vmcs[GuestRIP] != 0x1002 {
		t.Errorf("rdmsr apic base: %v %v rax %#x rdx %#x rip %#x", act, err, v.Regs.RAX, v.Regs.RDX, vmcs[GuestRIP])
	}
	v.Regs.RCX, v.Regs.RAX, v.Regs.RDX = IA32_LSTAR, 0x8100_0000, 0xFFFF_FFFF
	e.Reason = ExitReasonField(ExitWRMSR)
	if act, err := Dispatch(v, e); act != ActionResume || err != nil {
		t.Errorf("wrmsr lstar: %v %v", act, err)
	}
	if x, _ := g.Read(IA32_LSTAR); x != 0xFFFF_FFFF_8100_0000 {
		t.Errorf("LSTAR = %#x", x)
	}
	// A missing MSR faults: #GP(0) queued, RIP not advanced.
	delete(vmcs, GuestRIP)
	v.Regs.RCX = IA32_SPEC_CTRL
	e.Reason = ExitReasonField(ExitRDMSR)
	if act, err := Dispatch(v, e); act != ActionResume || err != nil {
		t.Errorf("rdmsr spec ctrl: %v %v", act, err)
	}
	if want := uint64(VectorGP | IntTypeHWException | IntInfoErrorCode | IntInfoValid); vmcs[VMEntryInterruptionInfo] != want || vmcs[VMEntryExceptionErrorCode] != 0 {
		t.Errorf("entry info %#x, want #GP(0) %#x", vmcs[VMEntryInterruptionInfo], want)
	}
	if _, moved := vmcs[GuestRIP]; moved || v.MSRFaults != 1 {
		t.Errorf("RIP moved past a faulting RDMSR (faults %d)", v.MSRFaults)
	}
}

func TestValidXCR0(t *testing.T) {
	all := uint64(XCR0Switchable)
	for _, tc := range []struct {
		x, allowed uint64
		ok         bool
	}{
		{1, all, true},
		{3, all, true},
		{7, all, true},
		{0xE7, all, true},
		{0, all, false},      // x87 must be set
		{5, all, false},      // AVX without SSE
		{0x27, all, false},   // part of AVX-512
		{0xE3, all, false},   // AVX-512 without AVX
		{7, 3, false},        // AVX not offered
		{1 << 9, all, false}, // PKRU never offered
	} {
		if got := ValidXCR0(tc.x, tc.allowed); got != tc.ok {
			t.Errorf("ValidXCR0(%#x, %#x) = %v", tc.x, tc.allowed, got)
		}
	}
}

func TestXSETBVExit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cr4      uint64
		rcx, x   uint64
		wantXCR0 uint64
		wantInfo uint64
	}{
		{"ok", CR4_OSXSAVE, 0, 7, 7, 0},
		{"no OSXSAVE: #UD", 0, 0, 7, 1, VectorUD | IntTypeHWException | IntInfoValid},
		{"bad value: #GP", CR4_OSXSAVE, 0, 5, 1, VectorGP | IntTypeHWException | IntInfoErrorCode | IntInfoValid},
		{"bad register: #GP", CR4_OSXSAVE, 1, 7, 1, VectorGP | IntTypeHWException | IntInfoErrorCode | IntInfoValid},
	} {
		v, _ := newTestVCPU(t)
		vmcs := v.VMCS.(fakeVMCS)
		vmcs[GuestCR4] = tc.cr4
		v.XCR0, v.XCR0Allowed = 1, XCR0_X87|XCR0_SSE|XCR0_AVX
		v.Regs.RCX, v.Regs.RAX, v.Regs.RDX = tc.rcx, tc.x, 0
		act, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitXSETBV), InstrLen: 3})
		if act != ActionResume || err != nil || v.XCR0 != tc.wantXCR0 || vmcs[VMEntryInterruptionInfo] != tc.wantInfo {
			t.Errorf("%s: %v %v XCR0 %#x entry info %#x", tc.name, act, err, v.XCR0, vmcs[VMEntryInterruptionInfo])
		}
	}
}

func TestCPUIDExitUsesView(t *testing.T) {
	v, _ := newTestVCPU(t)
	host := loadCPUIDDump(t, "testdata/cpuid-amd-epyc.txt")
	v.View = NewCPUIDView(CPUIDConfig{Host: host, CPUs: 2, XCR0: 7})
	v.APICID = 1
	v.VMCS.(fakeVMCS)[GuestCR4] = CR4_OSXSAVE
	v.Regs.RAX, v.Regs.RCX = 1, 0
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCPUID), InstrLen: 2}); err != nil {
		t.Fatal(err)
	}
	if v.Regs.RBX>>24 != 1 || v.Regs.RCX&(1<<CPUID01_ECX_OSXSAVE) == 0 || v.Regs.RCX&(1<<CPUID01_ECX_VMX) != 0 {
		t.Errorf("leaf 1 through the exit: ebx %#x ecx %#x", v.Regs.RBX, v.Regs.RCX)
	}
}
