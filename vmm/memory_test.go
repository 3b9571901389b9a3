package vmm

import (
	"encoding/binary"
	"errors"
	"testing"
)

func put64(m GuestMemory, a, v uint64)        { binary.LittleEndian.PutUint64(m[a:], v) }
func put32(m GuestMemory, a uint64, v uint32) { binary.LittleEndian.PutUint32(m[a:], v) }

func TestTranslate(t *testing.T) {
	m := make(GuestMemory, 1<<22)
	// 4-level: PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
	// la 0xFFFF_8000_0020_1234 -> 4 KiB page at 0x7000.
	// la 0xFFFF_8000_0040_5678 -> 2 MiB page at 0x20_0000.
	// la 0xFFFF_8000_4000_0010 -> 1 GiB page at 0 (PDPT entry 1, PS).
	const la4k, la2m, la1g = 0xFFFF_8000_0020_1234, 0xFFFF_8000_0040_5678, 0xFFFF_8000_4000_0010
	put64(m, 0x1000+256*8, 0x2000|3)
	put64(m, 0x2000+0*8, 0x3000|3)
	put64(m, 0x2000+1*8, 0|ptePS|3)
	put64(m, 0x3000+1*8, 0x4000|3)
	put64(m, 0x3000+2*8, 0x20_0000|ptePS|3)
	put64(m, 0x4000+1*8, 0x8000_0000_0000_7000|3) // XD bit is not address
	long := PagingState{CR0: CR0_PG | CR0_PE, CR3: 0x1000, CR4: CR4_PAE, EFER: EFER_LMA | EFER_LME}

	// 32-bit paging: PD at 0x10000; la 0x0040_0ABC -> PT 0x11000 -> 0x9000;
	// la 0x0080_0123 -> 4 MiB page at 0 with PSE.
	put32(m, 0x10000+1*4, 0x11000|3)
	put32(m, 0x10000+2*4, 0|ptePS|3)
	put32(m, 0x11000+0*4, 0x9000|3)
	flat := PagingState{CR0: CR0_PG | CR0_PE, CR3: 0x10000, CR4: CR4_PSE}

	// PAE: PDPT at 0x12000 (entry 0 -> PD 0x13000 -> 2 MiB page at 0x20_0000).
	put64(m, 0x12000, 0x13000|1)
	put64(m, 0x13000+3*8, 0x20_0000|ptePS|3)
	pae := PagingState{CR0: CR0_PG | CR0_PE, CR3: 0x12000, CR4: CR4_PAE}

	for _, tc := range []struct {
		name string
		ps   PagingState
		la   uint64
		want uint64
		err  bool
	}{
		{"paging off", PagingState{CR0: CR0_PE}, 0x1234_5678, 0x1234_5678, false},
		{"4-level 4K", long, la4k, 0x7234, false},
		{"4-level 2M", long, la2m, 0x20_5678, false},
		{"4-level 1G", long, la1g, 0x10, false},
		{"4-level not present", long, 0xFFFF_8000_0060_0000, 0, true},
		{"4-level other half", long, 0x1000, 0, true},
		{"32-bit 4K", flat, 0x0040_0ABC, 0x9ABC, false},
		{"32-bit 4M", flat, 0x0080_0123, 0x123, false},
		{"32-bit not present", flat, 0x00C0_0000, 0, true},
		{"PAE 2M", pae, 0x0060_1234, 0x20_1234, false},
		{"PAE not present", pae, 0x4000_0000, 0, true},
		{"tables outside RAM", PagingState{CR0: CR0_PG, CR3: 1 << 40, EFER: EFER_LMA}, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Translate(tc.ps, tc.la)
			if tc.err {
				if !errors.Is(err, ErrGuestAddress) {
					t.Fatalf("Translate(%#x) = %#x, %v; want ErrGuestAddress", tc.la, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Translate(%#x) = %#x, %v; want %#x", tc.la, got, err, tc.want)
			}
		})
	}

	// ReadLinear across a page boundary: 0x7FFE.. of la4k's page then the
	// next linear page, which is not mapped.
	var b [4]byte
	if err := m.ReadLinear(long, la4k|0xFFE, b[:]); !errors.Is(err, ErrGuestAddress) {
		t.Errorf("ReadLinear into an unmapped page: %v", err)
	}
	put64(m, 0x4000+2*8, 0x9000|3)
	copy(m[0x7FFE:], []byte{1, 2})
	copy(m[0x9000:], []byte{3, 4})
	if err := m.ReadLinear(long, la4k&^0xFFF|0xFFE, b[:]); err != nil || b != [4]byte{1, 2, 3, 4} {
		t.Errorf("ReadLinear across pages = %v, %v", b, err)
	}
	if err := m.WriteLinear(long, la4k&^0xFFF|0xFFF, []byte{9, 8}); err != nil || m[0x7FFF] != 9 || m[0x9000] != 8 {
		t.Errorf("WriteLinear across pages: %v", err)
	}
}

func TestGuestMemoryBounds(t *testing.T) {
	m := make(GuestMemory, 4096)
	var b [8]byte
	for _, a := range []uint64{4089, 4096, 1 << 63, ^uint64(0)} {
		if err := m.Read(a, b[:]); !errors.Is(err, ErrGuestAddress) {
			t.Errorf("Read(%#x) = %v", a, err)
		}
		if err := m.Write(a, b[:]); !errors.Is(err, ErrGuestAddress) {
			t.Errorf("Write(%#x) = %v", a, err)
		}
	}
	if err := m.Read(4088, b[:]); err != nil {
		t.Errorf("Read at the end: %v", err)
	}
}
