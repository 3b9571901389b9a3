package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// GuestMemory is the guest's RAM as the host sees it: guest-physical
// address a is byte a of the slice (the EPT maps it 1:1 onto the host
// frames behind the slice).
type GuestMemory []byte

// ErrGuestAddress is wrapped by accesses outside guest RAM and by failed
// guest page walks.
var ErrGuestAddress = errors.New("vmm: bad guest address")

// Read copies guest-physical [gpa, gpa+len(p)) into p.
func (m GuestMemory) Read(gpa uint64, p []byte) error {
	if gpa > uint64(len(m)) || uint64(len(p)) > uint64(len(m))-gpa {
		return fmt.Errorf("%w: read %#x+%d beyond %#x", ErrGuestAddress, gpa, len(p), len(m))
	}
	copy(p, m[gpa:])
	return nil
}

// Write copies p to guest-physical gpa.
func (m GuestMemory) Write(gpa uint64, p []byte) error {
	if gpa > uint64(len(m)) || uint64(len(p)) > uint64(len(m))-gpa {
		return fmt.Errorf("%w: write %#x+%d beyond %#x", ErrGuestAddress, gpa, len(p), len(m))
	}
	copy(m[gpa:], p)
	return nil
}

func (m GuestMemory) u64(gpa uint64) (uint64, error) {
	var b [8]byte
	if err := m.Read(gpa, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (m GuestMemory) u32(gpa uint64) (uint32, error) {
	var b [4]byte
	if err := m.Read(gpa, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// Paging mode bits of the guest's control registers and EFER (SDM Vol. 3A
// 2.5, 4.1.1).
const (
	CR0_PG    = 1 << 31
	CR0_PE    = 1 << 0
	CR4_PSE   = 1 << 4
	CR4_PAE   = 1 << 5
	CR4_LA57  = 1 << 12
	EFER_LME  = 1 << 8
	EFER_LMA  = 1 << 10
	EFER_SCE  = 1 << 0
	EFER_NXE  = 1 << 11
	pteP      = 1 << 0
	ptePS     = 1 << 7
	pteAddr64 = 0x000F_FFFF_FFFF_F000
)

// PagingState is what a guest page walk needs of the vCPU.
type PagingState struct {
	CR0, CR3, CR4, EFER uint64
}

// Translate walks the guest's page tables (SDM Vol. 3A 4.3 32-bit, 4.4 PAE,
// 4.5 4- and 5-level paging) from linear address la to a guest-physical
// address. With paging off the address is physical. Permissions are not
// checked: the walk serves instruction emulation after the CPU itself
// already made the access. PAE PDPTEs are read from memory, as a guest that
// did not change them since MOV CR3 expects.
func (m GuestMemory) Translate(ps PagingState, la uint64) (uint64, error) {
	if ps.CR0&CR0_PG == 0 {
		return la, nil
	}
	switch {
	case ps.EFER&EFER_LMA != 0:
		levels := 4
		if ps.CR4&CR4_LA57 != 0 {
			levels = 5
		}
		return m.walk64(ps.CR3&pteAddr64, la, levels)
	case ps.CR4&CR4_PAE != 0:
		pdpte, err := m.u64(ps.CR3&0xFFFF_FFE0 + (la>>30&3)*8)
		if err != nil {
			return 0, err
		}
		if pdpte&pteP == 0 {
			return 0, fmt.Errorf("%w: la %#x: PDPTE not present", ErrGuestAddress, la)
		}
		return m.walk64(pdpte&pteAddr64, la&0x3FFF_FFFF, 2)
	}
	// 32-bit paging.
	pde, err := m.u32(ps.CR3&0xFFFF_F000 + (la>>22&0x3FF)*4)
	if err != nil {
		return 0, err
	}
	if pde&pteP == 0 {
		return 0, fmt.Errorf("%w: la %#x: PDE not present", ErrGuestAddress, la)
	}
	if pde&ptePS != 0 && ps.CR4&CR4_PSE != 0 {
		// 4 MiB page: bits 20:13 are physical address bits 39:32.
		return uint64(pde&0xFFC0_0000) | uint64(pde>>13&0xFF)<<32 | la&0x3F_FFFF, nil
	}
	pte, err := m.u32(uint64(pde&0xFFFF_F000) + (la>>12&0x3FF)*4)
	if err != nil {
		return 0, err
	}
	if pte&pteP == 0 {
		return 0, fmt.Errorf("%w: la %#x: PTE not present", ErrGuestAddress, la)
	}
	return uint64(pte&0xFFFF_F000) | la&0xFFF, nil
}

// walk64 walks levels levels of 8-byte entries from the table at table.
func (m GuestMemory) walk64(table, la uint64, levels int) (uint64, error) {
	for l := levels; l >= 1; l-- {
		shift := 12 + 9*uint(l-1)
		e, err := m.u64(table + (la>>shift&0x1FF)*8)
		if err != nil {
			return 0, err
		}
		if e&pteP == 0 {
			return 0, fmt.Errorf("%w: la %#x: level-%d entry not present", ErrGuestAddress, la, l)
		}
		if l == 1 || (l <= 3 && e&ptePS != 0) {
			mask := uint64(1)<<shift - 1
			return e&pteAddr64&^mask | la&mask, nil
		}
		table = e & pteAddr64
	}
	panic("unreachable")
}

// ReadLinear copies len(p) bytes at guest-linear la into p, page by page.
func (m GuestMemory) ReadLinear(ps PagingState, la uint64, p []byte) error {
	for len(p) > 0 {
		pa, err := m.Translate(ps, la)
		if err != nil {
			return err
		}
		n := min(len(p), int(4096-la&0xFFF))
		if err := m.Read(pa, p[:n]); err != nil {
			return err
		}
		p, la = p[n:], la+uint64(n)
	}
	return nil
}

// WriteLinear copies p to guest-linear la, page by page.
func (m GuestMemory) WriteLinear(ps PagingState, la uint64, p []byte) error {
	for len(p) > 0 {
		pa, err := m.Translate(ps, la)
		if err != nil {
			return err
		}
		n := min(len(p), int(4096-la&0xFFF))
		if err := m.Write(pa, p[:n]); err != nil {
			return err
		}
		p, la = p[n:], la+uint64(n)
	}
	return nil
}

// MMIOBus maps guest-physical ranges outside RAM to devices; ranges do not
// overlap.
type MMIOBus struct {
	ranges []mmioRange // sorted by base
	// Unclaimed counts accesses no device claims: reads return all ones,
	// writes are dropped.
	Unclaimed uint64
	// Lock, if set, is held around every device access.
	Lock sync.Locker
}

type mmioRange struct {
	base, end uint64
	dev       MMIODevice
	name      string
}

// MMIODevice is a device on the MMIO bus (the method set of
// devices.MMIODevice): len(data) is 1, 2, 4 or 8, little-endian.
type MMIODevice interface {
	MMIORead(offset uint64, data []byte)
	MMIOWrite(offset uint64, data []byte)
}

// Add maps dev at [base, base+n).
func (b *MMIOBus) Add(name string, base, n uint64, dev MMIODevice) error {
	r := mmioRange{base: base, end: base + n, dev: dev, name: name}
	if n == 0 || r.end < base {
		return fmt.Errorf("vmm: mmio bus: %s: bad range %#x+%#x", name, base, n)
	}
	for _, o := range b.ranges {
		if r.base < o.end && o.base < r.end {
			return fmt.Errorf("vmm: mmio bus: %s [%#x, %#x) overlaps %s [%#x, %#x)", name, r.base, r.end, o.name, o.base, o.end)
		}
	}
	b.ranges = append(b.ranges, r)
	for i := len(b.ranges) - 1; i > 0 && b.ranges[i].base < b.ranges[i-1].base; i-- {
		b.ranges[i], b.ranges[i-1] = b.ranges[i-1], b.ranges[i]
	}
	return nil
}

func (b *MMIOBus) find(gpa uint64) *mmioRange {
	lo, hi := 0, len(b.ranges)
	for lo < hi {
		mid := (lo + hi) / 2
		if b.ranges[mid].end <= gpa {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(b.ranges) && b.ranges[lo].base <= gpa {
		return &b.ranges[lo]
	}
	return nil
}

// Claimed reports whether a device claims gpa.
func (b *MMIOBus) Claimed(gpa uint64) bool { return b.find(gpa) != nil }

// Read fills data from the device at gpa.
func (b *MMIOBus) Read(gpa uint64, data []byte) {
	if b.Lock != nil {
		b.Lock.Lock()
		defer b.Lock.Unlock()
	}
	if r := b.find(gpa); r != nil {
		r.dev.MMIORead(gpa-r.base, data)
		return
	}
	b.Unclaimed++
	for i := range data {
		data[i] = 0xFF
	}
}

// Write sends data to the device at gpa.
func (b *MMIOBus) Write(gpa uint64, data []byte) {
	if b.Lock != nil {
		b.Lock.Lock()
		defer b.Lock.Unlock()
	}
	if r := b.find(gpa); r != nil {
		r.dev.MMIOWrite(gpa-r.base, data)
		return
	}
	b.Unclaimed++
}
