package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// busRec records MMIO accesses and answers reads with fill.
type busRec struct {
	fill  uint64
	log   []string
	wrote []byte
}

func (b *busRec) Read(gpa uint64, data []byte) {
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], b.fill)
	copy(data, buf[:])
	b.log = append(b.log, fmt.Sprintf("r%d@%#x", len(data), gpa))
}

func (b *busRec) Write(gpa uint64, data []byte) {
	b.wrote = append([]byte(nil), data...)
	b.log = append(b.log, fmt.Sprintf("w%d@%#x", len(data), gpa))
}

func TestEmulateMMIO(t *testing.T) {
	const gpa = 0xFEE0_0300
	base := Regs{RAX: 0x1111_2222_3333_4444, RDX: gpa, R8: 0xAAAA_BBBB_CCCC_DDDD}
	for _, tc := range []struct {
		name  string
		code  []byte
		mode  int
		len   int
		wrote []byte // bytes stored, for writes
		fill  uint64 // the device's answer, for reads
		rax   uint64 // RAX afterwards
		err   bool
	}{
		{"mov [rdx], eax", []byte{0x89, 0x02}, 64, 2, []byte{0x44, 0x44, 0x33, 0x33}, 0, base.RAX, false},
		{"mov [rdx], ax", []byte{0x66, 0x89, 0x02}, 64, 3, []byte{0x44, 0x44}, 0, base.RAX, false},
		{"mov [rdx], ah", []byte{0x88, 0x22}, 64, 2, []byte{0x44}, 0, base.RAX, false},
		{"mov [rdx], rax", []byte{0x48, 0x89, 0x02}, 64, 3, []byte{0x44, 0x44, 0x33, 0x33, 0x22, 0x22, 0x11, 0x11}, 0, base.RAX, false},
		{"mov [rdx], r8d", []byte{0x44, 0x89, 0x02}, 64, 3, []byte{0xDD, 0xDD, 0xCC, 0xCC}, 0, base.RAX, false},
		{"mov dword [rdx], imm", []byte{0xC7, 0x02, 0x44, 0x33, 0x22, 0x11}, 64, 6, []byte{0x44, 0x33, 0x22, 0x11}, 0, base.RAX, false},
		{"mov byte [rdx+0x10], imm", []byte{0xC6, 0x42, 0x10, 0x7F}, 64, 4, []byte{0x7F}, 0, base.RAX, false},
		{"mov eax, [rdx] zero-extends", []byte{0x8B, 0x02}, 64, 2, nil, 0xFFFF_FFFF_8765_4321, 0x8765_4321, false},
		{"mov ax, [rdx] merges", []byte{0x66, 0x8B, 0x02}, 64, 3, nil, 0xBEEF, 0x1111_2222_3333_BEEF, false},
		{"mov ah, [rdx] merges", []byte{0x8A, 0x22}, 64, 2, nil, 0x5A, 0x1111_2222_3333_5A44, false},
		{"mov rax, [rdx]", []byte{0x48, 0x8B, 0x02}, 64, 3, nil, 0x0102_0304_0506_0708, 0x0102_0304_0506_0708, false},
		{"movzx eax, byte [rdx]", []byte{0x0F, 0xB6, 0x02}, 64, 3, nil, 0xFF, 0xFF, false},
		{"movsx rax, byte [rdx]", []byte{0x48, 0x0F, 0xBE, 0x02}, 64, 4, nil, 0x80, 0xFFFF_FFFF_FFFF_FF80, false},
		{"movzx eax, word [rdx]", []byte{0x0F, 0xB7, 0x02}, 64, 3, nil, 0xFFFF, 0xFFFF, false},
		{"32-bit mov [edx], eax", []byte{0x89, 0x02}, 32, 2, []byte{0x44, 0x44, 0x33, 0x33}, 0, base.RAX, false},
		{"16-bit mov [bp+si], ax", []byte{0x89, 0x02}, 16, 2, []byte{0x44, 0x44}, 0, base.RAX, false},
		{"mov [rdx], rsp", []byte{0x48, 0x89, 0x22}, 64, 0, nil, 0, base.RAX, true},
		{"add [rdx], eax", []byte{0x01, 0x02}, 64, 0, nil, 0, base.RAX, true},
		{"register move", []byte{0x89, 0xE0}, 64, 0, nil, 0, base.RAX, true},
		{"ud2", []byte{0x0F, 0x0B}, 64, 0, nil, 0, base.RAX, true},
		{"movdqa xmm0, [rdx]", []byte{0x66, 0x0F, 0x6F, 0x02}, 64, 0, nil, 0, base.RAX, true},
		{"truncated", []byte{0xC7, 0x02, 0x44}, 64, 0, nil, 0, base.RAX, true},
		{"empty", nil, 64, 0, nil, 0, base.RAX, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regs := base
			bus := &busRec{fill: tc.fill}
			n, err := EmulateMMIO(tc.code, tc.mode, &regs, gpa, bus)
			if tc.err {
				if !errors.Is(err, ErrMMIODecode) {
					t.Fatalf("err = %v, want ErrMMIODecode", err)
				}
				if len(bus.log) != 0 || regs != base {
					t.Errorf("a refused instruction touched the bus (%v) or registers", bus.log)
				}
				return
			}
			if err != nil || n != tc.len {
				t.Fatalf("EmulateMMIO = %d, %v; want %d", n, err, tc.len)
			}
			if tc.wrote != nil && !reflect.DeepEqual(bus.wrote, tc.wrote) {
				t.Errorf("stored % x, want % x", bus.wrote, tc.wrote)
			}
			if len(bus.log) != 1 {
				t.Errorf("bus accesses %v, want one", bus.log)
			}
			if regs.RAX != tc.rax {
				t.Errorf("RAX = %#x, want %#x", regs.RAX, tc.rax)
			}
			regs.RAX = base.RAX
			if regs != base {
				t.Errorf("other registers changed: %+v", regs)
			}
		})
	}
}

// TestHandleMMIO runs the exit path: fetch through the guest's page
// tables, emulate on the MMIO bus, advance RIP.
func TestHandleMMIO(t *testing.T) {
	mem := make(GuestMemory, 1<<20)
	// 4-level tables mapping the 4 KiB page at la 0xFFFF_FFFF_8000_5000
	// to 0x5000; the next page is unmapped.
	put64(mem, 0x1000+511*8, 0x2000|3)
	put64(mem, 0x2000+510*8, 0x3000|3)
	put64(mem, 0x3000+0*8, 0x4000|3)
	put64(mem, 0x4000+5*8, 0x5000|3)
	const rip = 0xFFFF_FFFF_8000_5FFE // the 15-byte fetch stops at the unmapped page
	copy(mem[0x5FFE:], []byte{0x89, 0x02})
	var log []string
	bus := &MMIOBus{}
	bus.Add("lapic", 0xFEE0_0000, 0x1000, mmioRec{"lapic", &log})
	vmcs := fakeVMCS{GuestCR0: CR0_PG | CR0_PE, GuestCR3: 0x1000, GuestCR4: CR4_PAE, GuestIA32EFER: EFER_LMA | EFER_LME,
		GuestCSAccessRights: 0xA09B}
	v := &VCPU{VMCS: vmcs, Mem: mem, MMIO: bus}
	v.Regs.RAX, v.Regs.RDX = 0x0B, 0xFEE0_00B0
	act, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitEPTViolation), GuestPhysical: 0xFEE0_00B0, Qualification: EPTQualWrite, RIP: rip})
	if act != ActionResume || err != nil {
		t.Fatalf("Dispatch = %v, %v", act, err)
	}
	if want := []string{"lapic w 0xb0 0b000000"}; fmt.Sprint(log) != fmt.Sprint(want) {
		t.Errorf("bus log %q, want %q", log, want)
	}
	if vmcs[GuestRIP] != rip+2 || v.MMIOExits != 1 {
		t.Errorf("RIP = %#x, MMIO exits %d", vmcs[GuestRIP], v.MMIOExits)
	}
	// An EPT violation outside the MMIO devices is still an error.
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitEPTViolation), GuestPhysical: 0xFED0_0000, RIP: rip}); !errors.Is(err, ErrEPTViolation) {
		t.Errorf("unclaimed gpa: %v", err)
	}
	// An unmapped RIP is a clear error, not a panic.
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitEPTViolation), GuestPhysical: 0xFEE0_00B0, RIP: 0x1234}); !errors.Is(err, ErrGuestAddress) {
		t.Errorf("unmapped rip: %v", err)
	}
}

func FuzzEmulateMMIO(f *testing.F) {
	for _, c := range [][]byte{{0x89, 0x02}, {0x8A, 0x22}, {0x48, 0x0F, 0xBE, 0x02}, {0xC7, 0x02, 0x44, 0x33, 0x22, 0x11}, {0x66, 0x0F, 0x6F, 0x02}} {
		f.Add(c, uint8(64), uint64(0x1234_5678_9ABC_DEF0))
	}
	f.Fuzz(func(t *testing.T, code []byte, mode uint8, fill uint64) {
		m := []int{16, 32, 64}[int(mode)%3]
		regs := Regs{RAX: 1, RBX: 2, RCX: 3, RDX: 4, RSI: 5, RDI: 6, RBP: 7, R8: 8, R9: 9, R10: 10, R11: 11, R12: 12, R13: 13, R14: 14, R15: 15}
		before := regs
		bus := &busRec{fill: fill}
		n, err := EmulateMMIO(code, m, &regs, 0xFEE0_0000, bus)
		if err != nil {
			if !errors.Is(err, ErrMMIODecode) {
				t.Fatalf("error %v does not wrap ErrMMIODecode", err)
			}
			if regs != before || len(bus.log) != 0 {
				t.Fatal("a refused instruction had effects")
			}
			return
		}
		if n < 1 || n > 15 || n > len(code) {
			t.Fatalf("length %d of % x", n, code)
		}
		if len(bus.log) != 1 {
			t.Fatalf("bus accesses %v", bus.log)
		}
		// At most one register changes.
		a, b := reflect.ValueOf(before), reflect.ValueOf(regs)
		changed := 0
		for i := 0; i < a.NumField(); i++ {
			if a.Field(i).Uint() != b.Field(i).Uint() {
				changed++
			}
		}
		if changed > 1 {
			t.Fatalf("% x changed %d registers", code, changed)
		}
	})
}
