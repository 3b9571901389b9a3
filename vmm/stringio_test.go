package vmm

import (
	"bytes"
	"errors"
	"testing"
)

// portRec collects OUT data and answers IN with a counter.
type portRec struct {
	out  []byte
	next uint32
}

func (p *portRec) PortIn(_ uint16, size int) uint32 {
	p.next++
	return p.next
}

func (p *portRec) PortOut(_ uint16, size int, v uint32) {
	for i := 0; i < size; i++ {
		p.out = append(p.out, byte(v>>(8*i)))
	}
}

func newStringIOVCPU(t *testing.T, long bool) (*VCPU, *portRec, fakeVMCS) {
	t.Helper()
	mem := make(GuestMemory, 1<<20)
	vmcs := fakeVMCS{GuestRFLAGS: 2, GuestCR0: CR0_PE}
	if long {
		// la 0x40_0000 + x -> 0x8_0000 + x through a 4 KiB page table.
		put64(mem, 0x1000, 0x2000|3)
		put64(mem, 0x2000, 0x3000|3)
		put64(mem, 0x3000+2*8, 0x4000|3)
		for i := uint64(0); i < 8; i++ {
			put64(mem, 0x4000+i*8, (0x8_0000+i*0x1000)|3)
		}
		vmcs[GuestCR0] = CR0_PG | CR0_PE
		vmcs[GuestCR3] = 0x1000
		vmcs[GuestCR4] = CR4_PAE
		vmcs[GuestIA32EFER] = EFER_LMA | EFER_LME
		vmcs[GuestDSBase] = 0xDEAD_0000 // ignored in 64-bit mode
	}
	dev := &portRec{}
	bus := &IOBus{}
	if err := bus.Add("dev", 0x1F0, 8, dev); err != nil {
		t.Fatal(err)
	}
	return &VCPU{VMCS: vmcs, Bus: bus, Mem: mem}, dev, vmcs
}

// Instruction-information values: address size in bits 9:7, segment in
// 17:15.
const (
	infoAddr16 = 0 << 7
	infoAddr32 = 1 << 7
	infoAddr64 = 2 << 7
	infoSegDS  = 3 << 15
	infoSegES  = 0 << 15
)

func stringExit(port uint16, size int, in, rep bool) *Exit {
	q := ioQual(port, size, in) | IOQualString
	if rep {
		q |= IOQualREP
	}
	return &Exit{Reason: ExitReasonField(ExitIOInstruction), Qualification: q, RIP: 0x100, InstrLen: 2}
}

func TestRepOutsb64(t *testing.T) {
	v, dev, vmcs := newStringIOVCPU(t, true)
	copy(v.Mem[0x8_0FFE:], "hello") // crosses into the next page
	vmcs[VMExitInstructionInfo] = infoAddr64 | infoSegDS
	v.Regs.RSI, v.Regs.RCX = 0x40_0FFE, 5
	if act, err := Dispatch(v, stringExit(0x1F0, 1, false, true)); act != ActionResume || err != nil {
		t.Fatal(act, err)
	}
	if string(dev.out) != "hello" || v.Regs.RSI != 0x40_1003 || v.Regs.RCX != 0 || vmcs[GuestRIP] != 0x102 {
		t.Errorf("out %q rsi %#x rcx %d rip %#x", dev.out, v.Regs.RSI, v.Regs.RCX, vmcs[GuestRIP])
	}
}

func TestRepInswBackwards32(t *testing.T) {
	v, _, vmcs := newStringIOVCPU(t, false)
	vmcs[VMExitInstructionInfo] = infoAddr32 | infoSegES
	vmcs[GuestRFLAGS] = 2 | RFLAGS_DF
	vmcs[GuestESBase] = 0x1000
	v.Regs.RDI, v.Regs.RCX = 0xFFFF_FFFF_0000_0104, 3 // upper half is not part of a 32-bit address
	if _, err := Dispatch(v, stringExit(0x1F0, 2, true, true)); err != nil {
		t.Fatal(err)
	}
	// Words 1, 2, 3 stored at 0x1104, 0x1102, 0x1100.
	if got := v.Mem[0x1100:0x1106]; !bytes.Equal(got, []byte{3, 0, 2, 0, 1, 0}) {
		t.Errorf("memory % x", got)
	}
	if v.Regs.RDI != 0xFFFF_FFFF_0000_00FE || v.Regs.RCX != 0 {
		t.Errorf("rdi %#x rcx %d", v.Regs.RDI, v.Regs.RCX)
	}
}

func TestOutsw16Wraps(t *testing.T) {
	v, dev, vmcs := newStringIOVCPU(t, false)
	vmcs[VMExitInstructionInfo] = infoAddr16 | infoSegDS
	vmcs[GuestDSBase] = 0x2_0000
	copy(v.Mem[0x2_FFFF:], []byte{0xAA, 0xBB}) // a word at DS:0xFFFF
	v.Regs.RSI, v.Regs.RCX = 0x1234_FFFF, 77   // no REP: RCX untouched
	if _, err := Dispatch(v, stringExit(0x1F0, 2, false, false)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dev.out, []byte{0xAA, 0xBB}) || v.Regs.RSI != 0x1234_0001 || v.Regs.RCX != 77 || vmcs[GuestRIP] != 0x102 {
		t.Errorf("out % x rsi %#x rcx %d rip %#x", dev.out, v.Regs.RSI, v.Regs.RCX, vmcs[GuestRIP])
	}
}

func TestRepInsbLongCountResumes(t *testing.T) {
	v, _, vmcs := newStringIOVCPU(t, false)
	vmcs[VMExitInstructionInfo] = infoAddr32
	v.Regs.RDI, v.Regs.RCX = 0x1_0000, maxStringIOPerExit+100
	e := stringExit(0x1F0, 1, true, true)
	if _, err := Dispatch(v, e); err != nil {
		t.Fatal(err)
	}
	if _, moved := vmcs[GuestRIP]; moved || v.Regs.RCX != 100 {
		t.Fatalf("after one exit: rcx %d, rip moved %v", v.Regs.RCX, moved)
	}
	if _, err := Dispatch(v, e); err != nil {
		t.Fatal(err)
	}
	if v.Regs.RCX != 0 || vmcs[GuestRIP] != 0x102 || v.Regs.RDI != 0x1_0000+maxStringIOPerExit+100 {
		t.Errorf("after two exits: rcx %d rip %#x rdi %#x", v.Regs.RCX, vmcs[GuestRIP], v.Regs.RDI)
	}
	// The counter continued across the exits: byte n is n+1 mod 256.
	if v.Mem[0x1_0000+maxStringIOPerExit] != byte((maxStringIOPerExit+1)%256) {
		t.Errorf("byte %d = %d", maxStringIOPerExit, v.Mem[0x1_0000+maxStringIOPerExit])
	}
}

func TestStringIOUnmapped(t *testing.T) {
	v, dev, vmcs := newStringIOVCPU(t, true)
	vmcs[VMExitInstructionInfo] = infoAddr64 | infoSegDS
	v.Regs.RSI, v.Regs.RCX = 0x80_0000, 1
	if _, err := Dispatch(v, stringExit(0x1F0, 1, false, true)); !errors.Is(err, ErrGuestAddress) {
		t.Errorf("OUTS from an unmapped address: %v", err)
	}
	if len(dev.out) != 0 {
		t.Errorf("device got % x", dev.out)
	}
}
