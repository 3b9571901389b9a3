package loader

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// cstr reads a NUL-terminated string from guest memory.
func cstr(mem Flat, addr uint32) string {
	end := bytes.IndexByte(mem[addr:], 0)
	if end < 0 {
		return "<unterminated>"
	}
	return string(mem[addr : int(addr)+end])
}

func TestLoadMultiboot1Kludge(t *testing.T) {
	const ram = 32 << 20
	mem := make(Flat, ram)
	for i := range mem {
		mem[i] = 0xEE // dirty RAM: the bss must be cleared
	}
	l := NewPCLayout(ram)
	img := testMB1Kludge(0x40, mb1PageAlign|mb1MemInfo, 0x100000, 0x2000, 0x3000, 0x80)
	mods := []Module{{Data: []byte("module one"), Cmdline: "one arg"}, {Data: bytes.Repeat([]byte{7}, 5000), Cmdline: "two"}}
	s, kind, err := Load(mem, Config{Layout: l, Kernel: img, Cmdline: "exit=3 x", Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	if kind != KindMultiboot1 {
		t.Errorf("kind %v", kind)
	}
	if !bytes.Equal(mem[0x100000:0x102000], img) {
		t.Error("image not loaded at load_addr")
	}
	if !bytes.Equal(mem[0x102000:0x105000], make([]byte, 0x3000)) || mem[0x0FFFFF] != 0xEE {
		t.Error("bss not zeroed exactly up to bss_end_addr")
	}
	if s.Mode != Protected32 || s.RIP != 0x100080 || s.RAX != mb1BootMagic || s.RBX != mbInfo ||
		s.CR0 != CR0PE|CR0ET|CR0NE || s.EFER != 0 || s.CS.Access&AccessDB == 0 || s.CS.Selector != BootCS {
		t.Errorf("start state %+v", s)
	}
	info := uint64(s.RBX)
	flags := u32(mem, info)
	if want := uint32(mb1InfoMem | mb1InfoCmdline | mb1InfoMods | mb1InfoMmap | mb1InfoLoader); flags != want {
		t.Errorf("info flags %#x, want %#x", flags, want)
	}
	if lo, hi := u32(mem, info+4), u32(mem, info+8); lo != LowRAMEnd>>10 || hi != (ram-HighMemory)>>10 {
		t.Errorf("mem_lower %d mem_upper %d KiB", lo, hi)
	}
	if got := cstr(mem, u32(mem, info+16)); got != "exit=3 x" {
		t.Errorf("cmdline %q", got)
	}
	if got := cstr(mem, u32(mem, info+64)); got != "doppel" {
		t.Errorf("boot_loader_name %q", got)
	}
	if n := u32(mem, info+20); n != 2 {
		t.Fatalf("mods_count %d", n)
	}
	modsAddr := uint64(u32(mem, info+24))
	prevEnd := uint32(0x105000)
	for i, m := range mods {
		e := modsAddr + 16*uint64(i)
		start, end := u32(mem, e), u32(mem, e+4)
		if start%pageSize != 0 || start < prevEnd || end-start != uint32(len(m.Data)) || !bytes.Equal(mem[start:end], m.Data) {
			t.Errorf("module %d at %#x-%#x (after %#x)", i, start, end, prevEnd)
		}
		if got := cstr(mem, u32(mem, e+8)); got != m.Cmdline {
			t.Errorf("module %d string %q", i, got)
		}
		prevEnd = end
	}
	mmapLen, mmapAddr := u32(mem, info+44), uint64(u32(mem, info+48))
	if mmapLen != uint32(24*len(l.Map)) {
		t.Fatalf("mmap_length %d", mmapLen)
	}
	for i, want := range l.Map {
		e := mmapAddr + 24*uint64(i)
		got := E820Entry{u64(mem, e+4), u64(mem, e+12), E820Type(u32(mem, e+20))}
		if u32(mem, e) != 20 || got != want {
			t.Errorf("mmap[%d] size %d %+v, want %+v", i, u32(mem, e), got, want)
		}
	}
}

func TestLoadMultiboot1ELF(t *testing.T) {
	const ram = 32 << 20
	mem := make(Flat, ram)
	text := bytes.Repeat([]byte{0x90}, 0x100)
	// Linked high (vaddr 0xC0100000) and loaded low (paddr 1 MiB): the
	// entry is translated to the physical address.
	img := testELF(elfClass32, 0xC0100010, []elfSeg{
		{0xC0100000, 0x100000, text, 0x100},
		{0xC0200000, 0x200000, []byte("data"), 0x1000},
	}, mb1HeaderBytes(mb1MemInfo))
	s, _, err := Load(mem, Config{Layout: NewPCLayout(ram), Kernel: img, Initrd: []byte("rd")})
	if err != nil {
		t.Fatal(err)
	}
	if s.RIP != 0x100010 {
		t.Errorf("entry %#x, want 0x100010", s.RIP)
	}
	if !bytes.Equal(mem[0x100000:0x100100], text) || string(mem[0x200000:0x200004]) != "data" {
		t.Error("segments not at their physical addresses")
	}
	// The initrd is module 0, named "initrd", after the last segment.
	e := uint64(u32(mem, s.RBX+24))
	if start := u32(mem, e); start < 0x201000 || string(mem[start:start+2]) != "rd" || cstr(mem, u32(mem, e+8)) != "initrd" {
		t.Errorf("initrd module at %#x", start)
	}
}

func TestLoadMultiboot2(t *testing.T) {
	const ram = 32 << 20
	for _, tc := range []struct {
		name  string
		img   []byte
		entry uint64
	}{
		{"address tags", func() []byte {
			hdr := mb2HeaderBytes(
				mb2Tag(mb2TagInfoRequest, 0, mb2InfoCmdline, mb2InfoMmap),
				mb2Tag(mb2TagAddress, 0, 0x100000, 0x100000, 0x101000, 0x102000),
				mb2Tag(mb2TagEntry, 0, 0x100040),
				mb2Tag(mb2TagFramebuffer, mb2TagOptional, 0, 0, 0),
				mb2Tag(mb2TagModAlign, 0))
			img := make([]byte, 0x1000)
			copy(img, hdr)
			return img
		}(), 0x100040},
		{"ELF64", testELF(elfClass64, 0x100020, []elfSeg{{0x100000, 0x100000, make([]byte, 0x40), 0x2000}}, mb2HeaderBytes()), 0x100020},
		{"ELF with entry tag", testELF(elfClass32, 0x100020, []elfSeg{{0x100000, 0x100000, make([]byte, 0x40), 0x2000}},
			mb2HeaderBytes(mb2Tag(mb2TagEntry, 0, 0x100030))), 0x100030},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := make(Flat, ram)
			l := NewPCLayout(ram)
			mods := []Module{{Data: []byte("guest kernel"), Cmdline: "vmlinuz console=ttyS0"}}
			s, kind, err := Load(mem, Config{Layout: l, Kernel: tc.img, Cmdline: "doppel.guest=vmlinuz", Modules: mods})
			if err != nil {
				t.Fatal(err)
			}
			if kind != KindMultiboot2 || s.RAX != mb2BootMagic || s.RIP != tc.entry || s.Mode != Protected32 {
				t.Fatalf("kind %v state %+v", kind, s)
			}
			info := s.RBX
			total := u32(mem, info)
			seen := map[uint32]bool{}
			for p := info + 8; p < info+uint64(total); {
				typ, size := u32(mem, p), u32(mem, p+4)
				seen[typ] = true
				switch typ {
				case mb2InfoCmdline:
					if got := cstr(mem, uint32(p+8)); got != "doppel.guest=vmlinuz" {
						t.Errorf("cmdline %q", got)
					}
				case mb2InfoLoader:
					if got := cstr(mem, uint32(p+8)); got != "doppel" {
						t.Errorf("loader %q", got)
					}
				case mb2InfoModule:
					start, end := u32(mem, p+8), u32(mem, p+12)
					if string(mem[start:end]) != "guest kernel" || cstr(mem, uint32(p+16)) != "vmlinuz console=ttyS0" || start%pageSize != 0 {
						t.Errorf("module %#x-%#x %q", start, end, cstr(mem, uint32(p+16)))
					}
				case mb2InfoMeminfo:
					if u32(mem, p+8) != LowRAMEnd>>10 || u32(mem, p+12) != (ram-HighMemory)>>10 {
						t.Errorf("meminfo %d %d", u32(mem, p+8), u32(mem, p+12))
					}
				case mb2InfoMmap:
					if u32(mem, p+8) != 24 || size != uint32(16+24*len(l.Map)) {
						t.Errorf("mmap entry_size %d size %d", u32(mem, p+8), size)
					}
					for i, want := range l.Map {
						e := p + 16 + 24*uint64(i)
						if got := (E820Entry{u64(mem, e), u64(mem, e+8), E820Type(u32(mem, e+16))}); got != want {
							t.Errorf("mmap[%d] %+v, want %+v", i, got, want)
						}
					}
				case mb2TagEnd:
					if size != 8 || p+8 != info+uint64(total) {
						t.Errorf("end tag size %d at %#x, total %d", size, p, total)
					}
				}
				p += uint64(size+7) &^ 7
			}
			for _, typ := range []uint32{mb2InfoCmdline, mb2InfoLoader, mb2InfoModule, mb2InfoMeminfo, mb2InfoMmap, mb2TagEnd} {
				if !seen[typ] {
					t.Errorf("no info tag %d", typ)
				}
			}
		})
	}
}

func TestLoadMultibootErrors(t *testing.T) {
	const ram = 16 << 20
	seg := func(paddr, memsz uint64, n int) elfSeg { return elfSeg{paddr, paddr, make([]byte, n), memsz} }
	mb1 := mb1HeaderBytes(0)
	kludge := testMB1Kludge(0, 0, 0x100000, 0x1000, 0, 0)
	for _, tc := range []struct {
		name string
		img  []byte
		mods []Module
		err  error
		msg  string
	}{
		{"overlapping segments", testELF(elfClass32, 0x100000, []elfSeg{seg(0x100000, 0x2000, 16), seg(0x101000, 0x1000, 16)}, mb1), nil, ErrOverlap, "overlaps segment 0"},
		{"segment in the info area", testELF(elfClass32, 0x10000, []elfSeg{seg(0x10000, 0x1000, 16)}, mb1), nil, ErrOverlap, "boot information"},
		{"segment beyond RAM", testELF(elfClass32, 0x100000, []elfSeg{seg(0x100000, 0x1000, 16), seg(0x2000000, 0x1000, 16)}, mb1), nil, ErrTooBig, "not in guest RAM"},
		{"segment in the PC hole", testELF(elfClass32, 0xA0000, []elfSeg{seg(0xA0000, 0x1000, 16)}, mb1), nil, ErrTooBig, "not in guest RAM"},
		{"ELF truncated", testELF(elfClass32, 0x100000, []elfSeg{seg(0x100000, 0x1000, 0x800)}, mb1)[:0x1400], nil, ErrTruncated, "beyond the file"},
		{"ELF filesz > memsz", testELF(elfClass32, 0x100000, []elfSeg{seg(0x100000, 0x10, 0x800)}, mb1), nil, ErrCorrupt, "file size"},
		{"ELF entry outside", testELF(elfClass32, 0x900000, []elfSeg{seg(0x100000, 0x1000, 16)}, mb1), nil, ErrCorrupt, "entry"},
		{"kludge entry outside", testMB1Kludge(0, 0, 0x100000, 0x1000, 0, 0x5000), nil, ErrCorrupt, "entry_addr"},
		{"kludge load_end before load", func() []byte {
			img := testMB1Kludge(0, 0, 0x100000, 0x1000, 0, 0)
			copy(img[20:], []byte{0, 0, 0x0F, 0}) // load_end_addr = 0x0F0000
			return img
		}(), nil, ErrCorrupt, "load_end_addr"},
		{"kludge truncated", kludge[:0x800], nil, ErrTruncated, "the file has"},
		{"module too big", kludge, []Module{{Data: make([]byte, ram), Cmdline: "big"}}, ErrTooBig, `module 0 ("big"`},
		{"too many modules", kludge, func() []Module {
			m := make([]Module, 3000)
			for i := range m {
				m[i] = Module{Data: []byte{1}, Cmdline: strings.Repeat("m", 200)}
			}
			return m
		}(), ErrTooBig, "boot information"},
		{"plain ELF", testELF(elfClass64, 0x100000, []elfSeg{seg(0x100000, 0x1000, 16)}, nil), nil, ErrUnsupported, "plain ELF64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Load(make(Flat, ram), Config{Layout: NewPCLayout(ram), Kernel: tc.img, Modules: tc.mods})
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Load = %v; want %v mentioning %q", err, tc.err, tc.msg)
			}
			t.Logf("error: %v", err)
		})
	}
}
