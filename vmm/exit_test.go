package vmm

import (
	"errors"
	"strings"
	"testing"
)

// fakeVMCS is a VMCS in a map.
type fakeVMCS map[Field]uint64

func (f fakeVMCS) Read(x Field) (uint64, error)  { return f[x], nil }
func (f fakeVMCS) Write(x Field, v uint64) error { f[x] = v; return nil }

// recDev records port accesses and answers reads with 0x11223344.
type recDev struct {
	log  []string
	last uint32
}

func (d *recDev) PortIn(off uint16, size int) uint32 {
	d.log = append(d.log, "in")
	return 0x11223344 >> (32 - 8*size) << (32 - 8*size) >> (32 - 8*size)
}
func (d *recDev) PortOut(off uint16, size int, v uint32) {
	d.log = append(d.log, strings.Repeat("o", size)+string(rune('0'+off)))
	d.last = v
}

func newTestVCPU(t *testing.T) (*VCPU, *recDev) {
	dev := &recDev{}
	bus := &IOBus{}
	if err := bus.Add("rec", 0x3F8, 8, dev); err != nil {
		t.Fatal(err)
	}
	v := &VCPU{VMCS: fakeVMCS{}, Bus: bus, CPUID: func(leaf, sub uint32) (uint32, uint32, uint32, uint32) {
		return leaf, sub, 0xFFFF_FFFF &^ (1 << 31), 0xEEEE
	}}
	return v, dev
}

func ioQual(port uint16, size int, in bool) uint64 {
	q := uint64(port)<<IOQualPortShift | uint64(size-1)
	if in {
		q |= IOQualIn
	}
	return q
}

func TestDispatchIO(t *testing.T) {
	v, dev := newTestVCPU(t)
	v.Regs.RAX = 0xAAAA_BBBB_CCCC_DD41
	act, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitIOInstruction), Qualification: ioQual(0x3F9, 1, false), RIP: 0x1000, InstrLen: 1})
	if act != ActionResume || err != nil || dev.last != 0x41 || v.VMCS.(fakeVMCS)[GuestRIP] != 0x1001 {
		t.Errorf("out al: %v %v, device got %#x, rip %#x", act, err, dev.last, v.VMCS.(fakeVMCS)[GuestRIP])
	}
	// IN AX keeps RAX bits 63:16; IN EAX zero-extends.
	for _, c := range []struct {
		size int
		want uint64
	}{{1, 0xAAAA_BBBB_CCCC_DD11}, {2, 0xAAAA_BBBB_CCCC_1122}, {4, 0x1122_3344}} {
		v.Regs.RAX = 0xAAAA_BBBB_CCCC_DD41
		if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitIOInstruction), Qualification: ioQual(0x3F8, c.size, true), InstrLen: 2}); err != nil {
			t.Fatal(err)
		}
		if v.Regs.RAX != c.want {
			t.Errorf("in size %d: rax %#x, want %#x", c.size, v.Regs.RAX, c.want)
		}
	}
	// Unclaimed ports read all ones of the access size.
	v.Regs.RAX = 0
	_, _ = Dispatch(v, &Exit{Reason: ExitReasonField(ExitIOInstruction), Qualification: ioQual(0x80, 2, true)})
	if v.Regs.RAX != 0xFFFF || v.Bus.Unclaimed != 1 {
		t.Errorf("unclaimed in: rax %#x, count %d", v.Regs.RAX, v.Bus.Unclaimed)
	}
	// String I/O without guest memory is refused, not mis-emulated.
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitIOInstruction), Qualification: ioQual(0x3F8, 1, false) | IOQualString}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("outsb: %v", err)
	}
	if v.Counts[ExitIOInstruction] != 6 {
		t.Errorf("I/O exits counted %d, want 6", v.Counts[ExitIOInstruction])
	}
}

func TestDispatchCPUID(t *testing.T) {
	v, _ := newTestVCPU(t)
	v.Regs.RAX, v.Regs.RCX = 1, 0
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCPUID), InstrLen: 2}); err != nil {
		t.Fatal(err)
	}
	if v.Regs.RCX&(1<<5) != 0 || v.Regs.RCX&(1<<31) == 0 {
		t.Errorf("leaf 1 ecx %#x: want VMX (bit 5) clear, hypervisor (bit 31) set", v.Regs.RCX)
	}
	v.Regs.RAX = 0x4000_0000
	_, _ = Dispatch(v, &Exit{Reason: ExitReasonField(ExitCPUID), InstrLen: 2})
	sig := string([]byte{byte(v.Regs.RBX), byte(v.Regs.RBX >> 8), byte(v.Regs.RBX >> 16), byte(v.Regs.RBX >> 24),
		byte(v.Regs.RCX), byte(v.Regs.RCX >> 8), byte(v.Regs.RCX >> 16), byte(v.Regs.RCX >> 24),
		byte(v.Regs.RDX), byte(v.Regs.RDX >> 8), byte(v.Regs.RDX >> 16), byte(v.Regs.RDX >> 24)})
	if sig != HypervisorSignature {
		t.Errorf("hypervisor signature %q", sig)
	}
}

func TestDispatchStops(t *testing.T) {
	v, _ := newTestVCPU(t)
	for _, c := range []struct {
		name string
		e    Exit
		act  Action
		err  error
		msg  string
	}{
		{"hlt", Exit{Reason: ExitReasonField(ExitHLT), InstrLen: 1}, ActionStop, nil, ""},
		{"external interrupt", Exit{Reason: ExitReasonField(ExitExternalInterrupt)}, ActionResume, nil, ""},
		{"preemption timer", Exit{Reason: ExitReasonField(ExitPreemptionTimer)}, ActionResume, nil, ""},
		{"triple fault", Exit{Reason: ExitReasonField(ExitTripleFault), RIP: 0x100123}, ActionStop, ErrTripleFault, "0x100123"},
		{"EPT violation", Exit{Reason: ExitReasonField(ExitEPTViolation), GuestPhysical: 0x4000_0000, Qualification: EPTQualWrite},
			ActionStop, ErrEPTViolation, "gpa 0x40000000, write, page --- (not mapped)"},
		{"invalid guest state", Exit{Reason: ExitReasonEntryFailure | ExitReasonField(ExitInvalidGuestState)},
			ActionStop, ErrEntryFailed, "invalid guest state"},
		{"MSR loading", Exit{Reason: ExitReasonEntryFailure | ExitReasonField(ExitMSRLoading), Qualification: 3},
			ActionStop, ErrEntryFailed, "MSR-load list entry 3"},
		{"unknown", Exit{Reason: ExitReasonField(ExitINVD), Qualification: 0}, ActionStop, ErrUnhandledExit, "INVD"},
		{"rdmsr without MSR file", Exit{Reason: ExitReasonField(ExitRDMSR), Qualification: 0}, ActionStop, ErrUnhandledExit, "rdmsr"},
		{"PML full without consumer", Exit{Reason: ExitReasonField(ExitPMLFull)}, ActionStop, ErrUnhandledExit, "PML"},
	} {
		act, err := Dispatch(v, &c.e)
		if act != c.act || !errors.Is(err, c.err) || c.err == nil && err != nil || err != nil && !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, %v; want %v, %v containing %q", c.name, act, err, c.act, c.err, c.msg)
		}
	}
	if v.Counts[ExitHLT] != 1 || v.Counts[ExitInvalidGuestState] != 1 || v.Counts[ExitRDMSR] != 1 {
		t.Errorf("counts: hlt %d invalid-guest-state %d rdmsr %d", v.Counts[ExitHLT], v.Counts[ExitInvalidGuestState], v.Counts[ExitRDMSR])
	}
}

func TestQualDecoders(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{IOQual(ioQual(0x3F8, 1, false)).String(), "out port 0x3f8 size 1"},
		{IOQual(ioQual(0xE00, 4, true) | IOQualString | IOQualREP).String(), "rep ins port 0xe00 size 4"},
		{EPTViolationQual(EPTQualFetch | EPTQualReadable | EPTQualWritable).String(), "fetch, page rw-"},
		{EPTViolationQual(EPTQualRead | EPTQualWrite | EPTQualLinearValid).String(), "read+write, page --- (not mapped), walking guest page tables"},
		{ExitEPTViolation.String(), "EPT violation"},
		{ExitReasonBasic(71).String(), "exit reason 71"},
		{VMInstructionErrorNumber(7).String(), "VM-instruction error 7: VM entry with invalid control field(s)"},
		{VMInstructionErrorNumber(8).String(), "VM-instruction error 8: VM entry with invalid host-state field(s)"},
		{VMInstructionErrorNumber(99).String(), "VM-instruction error 99"},
		{ControlNames(ProcBased2, Proc2EnableEPT|Proc2EnablePML|1<<30), "enable EPT, enable PML, bit 30"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestIOBusOverlap(t *testing.T) {
	b := &IOBus{}
	if err := b.Add("a", 0x3F8, 8, &recDev{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		base uint16
		n    int
		ok   bool
	}{{0x3F0, 8, true}, {0x3FF, 1, false}, {0x3F0, 9, false}, {0x400, 1, true}, {0xFFFF, 2, false}} {
		if err := b.Add("b", r.base, r.n, &recDev{}); (err == nil) != r.ok {
			t.Errorf("add [%#x+%d): %v", r.base, r.n, err)
		}
	}
}

// Failed VM entries name the error number and its meaning, or the exit
// qualification decoded (synthetic values: SDM Vol. 3C 31.4, 28.2.1).
func TestEntryFailureMessages(t *testing.T) {
	v, _ := newTestVCPU(t)
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"guest state, default", EntryFailureDetail(ExitInvalidGuestState, 0), "invalid guest state, qualification 0: a guest-state field breaks the checks of SDM 27.3.1"},
		{"guest state, PDPTEs", EntryFailureDetail(ExitInvalidGuestState, 2), "invalid guest state, qualification 2: loading the PDPTEs failed"},
		{"guest state, link pointer", EntryFailureDetail(ExitInvalidGuestState, 4), "invalid guest state, qualification 4: invalid VMCS link pointer"},
		{"MSR load", EntryFailureDetail(ExitMSRLoading, 5), "VM-entry MSR-load list entry 5 failed"},
		{"machine check", EntryFailureDetail(ExitMachineCheck, 0), "machine-check event during VM entry"},
		{"VMfailValid 7", VMInstructionErrorNumber(7).String(), "VM-instruction error 7: VM entry with invalid control field(s)"},
		{"VMfailValid 26", VMInstructionErrorNumber(26).String(), "VM-instruction error 26: VM entry with events blocked by MOV SS"},
		{"dispatched", func() string {
			_, err := Dispatch(v, &Exit{Reason: ExitReasonEntryFailure | ExitReasonField(ExitInvalidGuestState), RIP: 0x100185})
			return err.Error()
		}(), "vmm: VM entry failed: invalid guest state, qualification 0: a guest-state field breaks the checks of SDM 27.3.1 (exit reason 0x80000021, rip 0x100185)"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestTripleFaultError(t *testing.T) {
	v, _ := newTestVCPU(t)
	act, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitTripleFault), RIP: 0x100185})
	var tf *TripleFaultError
	if act != ActionStop || !errors.As(err, &tf) || tf.RIP != 0x100185 || !errors.Is(err, ErrTripleFault) {
		t.Fatalf("triple fault: %v, %v", act, err)
	}
	if got, want := err.Error(), "vmm: guest triple fault at rip=0x100185"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestPreemptionTimerValue(t *testing.T) {
	for _, c := range []struct {
		rate uint
		want uint64
	}{{0, 1 << 23}, {5, 1 << 18}, {23, 1}, {31, 1}} {
		if got := PreemptionTimerValue(c.rate); got != c.want {
			t.Errorf("rate %d: %d, want %d", c.rate, got, c.want)
		}
	}
}
