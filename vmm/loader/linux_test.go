package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func u32(b []byte, off uint64) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func u64(b []byte, off uint64) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func TestLoadLinux(t *testing.T) {
	const ram = 64 << 20
	mem := make(Flat, ram)
	l := NewPCLayout(ram)
	if err := l.Carve(ram-0x10000, 0x10000, E820ACPI); err != nil {
		t.Fatal(err)
	}
	l.RSDP = ram - 0x10000
	img := testBzImage(defaultBzOpts())
	initrd := bytes.Repeat([]byte("initrd!"), 1000)
	cmdline := "console=ttyS0 quiet"
	s, kind, err := Load(mem, Config{Layout: l, Kernel: img, Cmdline: cmdline, Initrd: initrd})
	if err != nil {
		t.Fatal(err)
	}
	if kind != KindBzImage {
		t.Errorf("kind %v", kind)
	}
	const load = 0x1000000 // pref_address
	if !bytes.Equal(mem[load:load+0x3000], img[1024:]) {
		t.Error("protected-mode kernel not at pref_address")
	}
	zp := mem[linuxZeroPage : linuxZeroPage+zeroPageSize]
	if !bytes.Equal(zp[0x202:0x206], []byte("HdrS")) || zp[typeOfLoaderOff] != 0xFF {
		t.Errorf("zero page header: magic %q type_of_loader %#x", zp[0x202:0x206], zp[typeOfLoaderOff])
	}
	if got := u32(zp, cmdLinePtrOff); got != linuxCmdline {
		t.Errorf("cmd_line_ptr %#x", got)
	}
	if got := string(mem[linuxCmdline : linuxCmdline+len(cmdline)+1]); got != cmdline+"\x00" {
		t.Errorf("command line %q", got)
	}
	rd, rdSize := uint64(u32(zp, ramdiskImageOff))|uint64(u32(zp, extRamdiskImageOff))<<32, u32(zp, ramdiskSizeOff)
	if rdSize != uint32(len(initrd)) || !bytes.Equal(mem[rd:rd+uint64(rdSize)], initrd) {
		t.Errorf("initrd at %#x size %#x not loaded", rd, rdSize)
	}
	// As high as possible: the last page-aligned place below the ACPI tables.
	if want := (ram - 0x10000 - uint64(len(initrd))) &^ 0xFFF; rd != want {
		t.Errorf("initrd at %#x, want %#x (highest fit)", rd, want)
	}
	if got := u64(zp, acpiRSDPAddrOff); got != l.RSDP {
		t.Errorf("acpi_rsdp_addr %#x, want %#x", got, l.RSDP)
	}
	if n := int(zp[e820EntriesOff]); n != len(l.Map) {
		t.Fatalf("e820_entries %d, want %d", n, len(l.Map))
	}
	for i, e := range l.Map {
		off := uint64(e820TableOff + 20*i)
		got := E820Entry{u64(zp, off), u64(zp, off+8), E820Type(u32(zp, off+16))}
		if got != e {
			t.Errorf("e820[%d] = %+v, want %+v", i, got, e)
		}
	}
	// Identity map: 3 GiB + 4 MiB maps to itself through PML4 -> PDPT -> PD.
	va := uint64(3<<30 | 4<<20)
	pdpt := u64(mem, linuxPML4) &^ 0xFFF
	pd := u64(mem, pdpt+8*(va>>30)) &^ 0xFFF
	pde := u64(mem, pd+8*(va>>21&511))
	if pde&^0xFFF != va || pde&(ptePresent|ptePageSize) != ptePresent|ptePageSize {
		t.Errorf("PDE for %#x = %#x", va, pde)
	}
	want := BootState{
		Mode: Long64, RIP: load + 0x200, RSP: linuxStack, RSI: linuxZeroPage, RFLAGS: 2,
		CR0: CR0PE | CR0ET | CR0NE | CR0PG, CR3: linuxPML4, CR4: CR4PAE, EFER: EFERLME | EFERLMA,
		GDTBase: linuxGDT, GDTLimit: 31,
	}
	got := *s
	got.CS, got.DS, got.ES, got.SS, got.FS, got.GS, got.TR, got.LDTR = Segment{}, Segment{}, Segment{}, Segment{}, Segment{}, Segment{}, Segment{}, Segment{}
	if got != want {
		t.Errorf("state\n got %+v\nwant %+v", got, want)
	}
	if s.CS.Selector != 0x10 || s.CS.Access&AccessLong == 0 || s.DS.Selector != 0x18 || s.SS != s.DS {
		t.Errorf("segments CS %+v DS %+v SS %+v", s.CS, s.DS, s.SS)
	}
	// The GDT in memory holds the 64-bit code descriptor at __BOOT_CS.
	if d := u64(mem, linuxGDT+BootCS); d != 0x00AF9B000000FFFF {
		t.Errorf("GDT[__BOOT_CS] = %#x, want 0x00af9b000000ffff", d)
	}
	if d := u64(mem, linuxGDT+BootDS); d != 0x00CF93000000FFFF {
		t.Errorf("GDT[__BOOT_DS] = %#x, want 0x00cf93000000ffff", d)
	}
}

func TestLoadLinuxRelocates(t *testing.T) {
	// 12 MiB of RAM: pref_address (16 MiB) is out, so a relocatable
	// kernel goes to the first 2 MiB-aligned place at or above 1 MiB.
	const ram = 12 << 20
	mem := make(Flat, ram)
	s, err := LoadLinux(mem, NewPCLayout(ram), testBzImage(defaultBzOpts()), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.RIP != 0x200000+0x200 {
		t.Errorf("RIP %#x, want 0x200200", s.RIP)
	}
}

func TestLoadLinuxInitrdAbove4G(t *testing.T) {
	// A layout whose only room for the initrd is above 4 GiB: the low
	// RAM is all taken by the kernel's init_size.
	l := Layout{Map: []E820Entry{
		{0, LowRAMEnd, E820RAM},
		{0x1000000, 0x400000, E820RAM},
		{fourGiB, 0x100000, E820RAM},
	}}
	img := testBzImage(defaultBzOpts())
	mem := &sparse{}
	if _, err := LoadLinux(mem, l, img, "", make([]byte, 0x8000)); err != nil {
		t.Fatal(err)
	}
	zp := mem.pages[linuxZeroPage]
	rd := uint64(u32(zp, ramdiskImageOff)) | uint64(u32(zp, extRamdiskImageOff))<<32
	if rd < fourGiB {
		t.Errorf("initrd at %#x, want above 4 GiB", rd)
	}
	// Without XLF_CAN_BE_LOADED_ABOVE_4G there is no room.
	o := defaultBzOpts()
	o.xloadflags = xlfKernel64
	if _, err := LoadLinux(&sparse{}, l, testBzImage(o), "", make([]byte, 0x8000)); !errors.Is(err, ErrTooBig) {
		t.Errorf("initrd without room below 4 GiB: %v, want ErrTooBig", err)
	}
}

// sparse is guest memory that records writes by address, for layouts
// too large for a Flat.
type sparse struct{ pages map[uint64][]byte }

func (s *sparse) WriteAt(p []byte, addr uint64) error {
	if s.pages == nil {
		s.pages = map[uint64][]byte{}
	}
	s.pages[addr] = append([]byte(nil), p...)
	return nil
}

func TestLoadLinuxErrors(t *testing.T) {
	const ram = 64 << 20
	opts := func(f func(*bzImageOpts)) []byte {
		o := defaultBzOpts()
		f(&o)
		return testBzImage(o)
	}
	good := testBzImage(defaultBzOpts())
	truncated := good[:len(good)-0x100]
	for _, tc := range []struct {
		name    string
		img     []byte
		cmdline string
		initrd  int
		ram     uint64
		err     error
		msg     string
	}{
		{"truncated payload", truncated, "", 0, ram, ErrTruncated, "syssize"},
		{"old protocol", opts(func(o *bzImageOpts) { o.version = 0x020B }), "", 0, ram, ErrUnsupported, "64-bit entry"},
		{"no 64-bit entry", opts(func(o *bzImageOpts) { o.xloadflags = 0 }), "", 0, ram, ErrUnsupported, "XLF_KERNEL_64"},
		{"command line too long", good, strings.Repeat("x", 2049), 0, ram, ErrTooBig, "command line"},
		{"kernel too big", opts(func(o *bzImageOpts) { o.initSize = 200 << 20 }), "", 0, ram, ErrTooBig, "init_size"},
		{"not relocatable", opts(func(o *bzImageOpts) { o.relocatable = false }), "", 0, 12 << 20, ErrTooBig, "relocatable false"},
		{"initrd too big", good, "", 60 << 20, ram, ErrTooBig, "initrd"},
		{"initrd above initrd_addr_max", opts(func(o *bzImageOpts) { o.initrdMax = 0xFFFFF }), "", 0x1000, ram, ErrTooBig, "initrd"},
		{"bad alignment", opts(func(o *bzImageOpts) { o.align = 3; o.pref = 0 }), "", 0, ram, ErrCorrupt, "kernel_alignment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := make(Flat, tc.ram)
			var initrd []byte
			if tc.initrd > 0 {
				initrd = make([]byte, tc.initrd)
			}
			_, _, err := Load(mem, Config{Layout: NewPCLayout(tc.ram), Kernel: tc.img, Cmdline: tc.cmdline, Initrd: initrd})
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Load = %v; want %v mentioning %q", err, tc.err, tc.msg)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestLoadLinuxBadLayout(t *testing.T) {
	img := testBzImage(defaultBzOpts())
	noLow := Layout{Map: []E820Entry{{HighMemory, 64 << 20, E820RAM}}}
	if _, err := LoadLinux(make(Flat, 80<<20), noLow, img, "", nil); !errors.Is(err, ErrBadLayout) {
		t.Errorf("no low RAM: %v, want ErrBadLayout", err)
	}
	if _, err := LoadLinux(make(Flat, 1<<20), Layout{}, img, "", nil); !errors.Is(err, ErrBadLayout) {
		t.Errorf("empty layout: %v, want ErrBadLayout", err)
	}
	// Memory smaller than the layout claims: the write fails cleanly.
	if _, err := LoadLinux(make(Flat, 1<<20), NewPCLayout(64<<20), img, "", nil); !errors.Is(err, ErrTooBig) {
		t.Errorf("short memory: %v, want ErrTooBig", err)
	}
}
