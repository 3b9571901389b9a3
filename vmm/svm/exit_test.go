package svm

import (
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/vmm"
)

// testVCPU is a vCPU over a Go VMCB page and a small guest memory at
// guest-physical 0, with the test guest's start state.
func testVCPU(t *testing.T, mem []byte) (*VCPU, *recorder) {
	t.Helper()
	var page [512]uint64
	v := &VCPU{VMCB: NewVMCB(&page), Bus: &vmm.IOBus{}}
	if err := v.VMCB.SetupGuest(GuestConfig{NCR3: 0x1000, ASID: 1, IOPM: 0x2000, MSRPM: 0x5000, Entry: 0x100, Stack: 0x100}); err != nil {
		t.Fatal(err)
	}
	v.ReadGuest = func(gpa uint64, b []byte) error {
		if gpa+uint64(len(b)) > uint64(len(mem)) {
			return errors.New("beyond guest RAM")
		}
		copy(b, mem[gpa:])
		return nil
	}
	v.CPUID = func(leaf, sub uint32) (a, b, c, d uint32) {
		return leaf, sub, 0xFFFF_FFFF, 0x1234
	}
	r := &recorder{}
	if err := v.Bus.Add("rec", 0xE00, 0x38, r); err != nil {
		t.Fatal(err)
	}
	return v, r
}

type recorder struct {
	outs []uint32
	in   uint32
}

func (r *recorder) PortIn(off uint16, size int) uint32         { return r.in }
func (r *recorder) PortOut(off uint16, size int, value uint32) { r.outs = append(r.outs, value) }

func TestDispatchIOIO(t *testing.T) {
	v, r := testVCPU(t, make([]byte, 4096))
	r.in = 0xCAFE_F00D
	v.Regs.RAX = 0xFFFF_FFFF_0000_0000
	// in eax, dx at 0xE04: next RIP in EXITINFO2.
	e := Exit{Code: ExitIOIO, Info1: 0xE04<<IOIOPortSh | IOIOTypeIn | IOIOSz32, Info2: 0x123, RIP: 0x122}
	if act, err := Dispatch(v, &e); act != vmm.ActionResume || err != nil {
		t.Fatalf("IN: %v %v", act, err)
	}
	if v.Regs.RAX != 0xCAFE_F00D || v.VMCB.Get64(SaveRIP) != 0x123 {
		t.Errorf("IN: RAX %#x RIP %#x", v.Regs.RAX, v.VMCB.Get64(SaveRIP))
	}
	v.Regs.RAX = 0x1_0000_00AB
	e = Exit{Code: ExitIOIO, Info1: 0xE10<<IOIOPortSh | IOIOSz8, Info2: 0x200, RIP: 0x1FF}
	Dispatch(v, &e)
	if len(r.outs) != 1 || r.outs[0] != 0xAB {
		t.Errorf("OUT byte: %x", r.outs)
	}
	e = Exit{Code: ExitIOIO, Info1: 0xE10<<IOIOPortSh | IOIOSz8 | IOIOStr | IOIORep, Info2: 0x200, RIP: 0x1FE}
	if _, err := Dispatch(v, &e); !errors.Is(err, vmm.ErrUnsupported) {
		t.Errorf("rep outsb: %v, want ErrUnsupported", err)
	}
	if v.Counts[ExitIOIO] != 3 {
		t.Errorf("IOIO counted %d times", v.Counts[ExitIOIO])
	}
}

// TestDecodeLengths: without NRIP save the length comes from decoding the
// guest's bytes (32-bit code, paging off), and a mismatch is an error.
func TestDecodeLengths(t *testing.T) {
	mem := make([]byte, 8192)
	copy(mem[0x100:], []byte{0x0F, 0xA2})       // cpuid
	copy(mem[0x200:], []byte{0xF4})             // hlt
	copy(mem[0x300:], []byte{0x66, 0x0F, 0xA2}) // cpuid with a redundant prefix
	copy(mem[0xFFF:], []byte{0x0F, 0xA2})       // cpuid across a page boundary
	copy(mem[0x400:], []byte{0x90})             // nop: not what a CPUID exit says
	copy(mem[0x1FFF:], []byte{0x0F})            // truncated at the end of RAM
	for _, c := range []struct {
		code    ExitCode
		rip     uint64
		next    uint64
		wantErr bool
	}{
		{ExitCPUID, 0x100, 0x102, false},
		{ExitHLT, 0x200, 0x201, false},
		{ExitCPUID, 0x300, 0x303, false},
		{ExitCPUID, 0xFFF, 0x1001, false},
		{ExitCPUID, 0x400, 0, true},
		{ExitCPUID, 0x1FFF, 0, true},
		{ExitCPUID, 0x9000, 0, true},
	} {
		v, _ := testVCPU(t, mem)
		e := Exit{Code: c.code, RIP: c.rip}
		_, err := Dispatch(v, &e)
		if c.wantErr {
			if !errors.Is(err, ErrDecode) {
				t.Errorf("%v at %#x: %v, want ErrDecode", c.code, c.rip, err)
			}
			continue
		}
		if err != nil || v.VMCB.Get64(SaveRIP) != c.next || v.Decoded != 1 {
			t.Errorf("%v at %#x: err %v, rip %#x (want %#x), decoded %d", c.code, c.rip, err, v.VMCB.Get64(SaveRIP), c.next, v.Decoded)
		}
	}
	// With NRIP save the CPU's next RIP is taken as is.
	v, _ := testVCPU(t, mem)
	v.NRIPS = true
	e := Exit{Code: ExitCPUID, RIP: 0x400, NextRIP: 0x402}
	if _, err := Dispatch(v, &e); err != nil || v.VMCB.Get64(SaveRIP) != 0x402 || v.Decoded != 0 {
		t.Errorf("NRIPS: err %v rip %#x decoded %d", err, v.VMCB.Get64(SaveRIP), v.Decoded)
	}
}

func TestDispatchCPUID(t *testing.T) {
	mem := make([]byte, 4096)
	copy(mem[0x100:], []byte{0x0F, 0xA2})
	for _, c := range []struct {
		leaf       uint32
		a, b, c, d uint32
	}{
		{1, 1, 0, 0xFFFF_FFFF &^ (1 << 5), 0x1234},
		{0x8000_0001, 0x8000_0001, 0, 0xFFFF_FFFF &^ (1 << 2), 0x1234},
		{0x8000_000A, 0, 0, 0, 0},
		{0x4000_0000, 0x4000_0000, 0x7070_6f64, 0x662d_6c65, 0x7668_2d74},
	} {
		v, _ := testVCPU(t, mem)
		v.Regs.RAX = uint64(c.leaf)
		e := Exit{Code: ExitCPUID, RIP: 0x100}
		if _, err := Dispatch(v, &e); err != nil {
			t.Fatal(err)
		}
		got := [4]uint64{v.Regs.RAX, v.Regs.RBX, v.Regs.RCX, v.Regs.RDX}
		if got != [4]uint64{uint64(c.a), uint64(c.b), uint64(c.c), uint64(c.d)} {
			t.Errorf("leaf %#x: got %#x", c.leaf, got)
		}
	}
}

func TestDispatchStops(t *testing.T) {
	v, _ := testVCPU(t, make([]byte, 4096))
	for _, c := range []struct {
		e    Exit
		want error
		msg  string
	}{
		{Exit{Code: ExitShutdown, RIP: 0x150}, vmm.ErrTripleFault, "rip=0x150"},
		{Exit{Code: ExitNPF, Info1: NPFWrite | NPFFinalGPA, Info2: 0xFEE0_0000}, ErrNestedPageFault, "gpa 0xfee00000, write, not present"},
		{Exit{Code: ExitInvalid}, ErrInvalidVMCB, "guest EFER 0x1000"},
		{Exit{Code: ExitVMMCALL, RIP: 0x10}, vmm.ErrUnhandledExit, "SVM VMMCALL"},
		{Exit{Code: ExitMSR, Info1: 1}, vmm.ErrUnsupported, "wrmsr"},
	} {
		act, err := Dispatch(v, &c.e)
		if act != vmm.ActionStop || !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v %v, want stop with %v naming %q", c.e.Code, act, err, c.want, c.msg)
		}
	}
	// An NPF policy resumes the guest.
	v.OnNPF = func(v *VCPU, gpa uint64, q NPFInfo) (vmm.Action, error) { return vmm.ActionResume, nil }
	if act, err := Dispatch(v, &Exit{Code: ExitNPF}); act != vmm.ActionResume || err != nil {
		t.Errorf("NPF with a policy: %v %v", act, err)
	}
}

// TestVMCBLayout pins the offsets of App. B and the start state.
func TestVMCBLayout(t *testing.T) {
	var page [512]uint64
	v := NewVMCB(&page)
	if err := v.SetupGuest(GuestConfig{NCR3: 0x7000, ASID: 3, IOPM: 0x10000, MSRPM: 0x20000, Entry: 0x100000, Stack: 0xFF000}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"intercept VMRUN word at 0x10", page[0x10/8] & 1, 1},
		{"intercept CPUID, HLT, IOIO at 0x0C", page[0x08/8] >> 32 & (1<<18 | 1<<24 | 1<<27), 1<<18 | 1<<24 | 1<<27},
		{"IOPM at 0x40", page[0x40/8], 0x10000},
		{"MSRPM at 0x48", page[0x48/8], 0x20000},
		{"ASID at 0x58", page[0x58/8] & 0xFFFF_FFFF, 3},
		{"TLB_CONTROL at 0x5C", page[0x58/8] >> 32 & 0xFF, TLBControlFlushAll},
		{"V_INTR_MASKING", page[0x60/8], 1 << 24},
		{"NP_ENABLE at 0x90", page[0x90/8], 1},
		{"N_CR3 at 0xB0", page[0xB0/8], 0x7000},
		{"CS attrib/limit at 0x410", page[0x410/8], 0xFFFF_FFFF<<32 | 0xC9B<<16 | 8},
		{"EFER.SVME at 0x4D0", page[0x4D0/8], 1 << 12},
		{"CR0 at 0x558", page[0x558/8], 0x31},
		{"RIP at 0x578", page[0x578/8], 0x100000},
		{"RSP at 0x5D8", page[0x5D8/8], 0xFF000},
		{"G_PAT at 0x668", page[0x668/8], 0x0007_0406_0007_0406},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if err := v.SetupGuest(GuestConfig{ASID: 0}); err == nil {
		t.Error("ASID 0 accepted")
	}
	if v.cpuMode() != 32 {
		t.Errorf("start mode %d, want 32", v.cpuMode())
	}
}
