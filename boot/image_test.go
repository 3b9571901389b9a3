package boot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// image returns the built doppel.bin ($DOPPEL_IMAGE or ../build/doppel.bin).
func image(t *testing.T) []byte {
	p := os.Getenv("DOPPEL_IMAGE")
	if p == "" {
		p = filepath.Join("..", "build", "doppel.bin")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("no image to check (%v): run boot/build.sh first", err)
	}
	return b
}

const loadAddr = 0x100000

// TestMultiboot1Header checks the header QEMU -kernel reads: in the first
// 8 KiB, 4-aligned, checksum, a.out-kludge fields consistent with the file
// (Multiboot 0.6.96 sec. 3.1).
func TestMultiboot1Header(t *testing.T) {
	b := image(t)
	le := binary.LittleEndian
	for off := 0; off+48 <= len(b) && off < 8192; off += 4 {
		if le.Uint32(b[off:]) != 0x1BADB002 {
			continue
		}
		magic, flags, sum := le.Uint32(b[off:]), le.Uint32(b[off+4:]), le.Uint32(b[off+8:])
		if magic+flags+sum != 0 {
			t.Fatalf("multiboot1 checksum wrong")
		}
		if flags&(1<<16) == 0 {
			t.Fatalf("multiboot1 flags %#x: no address fields", flags)
		}
		hdr, load, loadEnd, bssEnd, entry := le.Uint32(b[off+12:]), le.Uint32(b[off+16:]), le.Uint32(b[off+20:]), le.Uint32(b[off+24:]), le.Uint32(b[off+28:])
		if load != loadAddr || int(hdr-load) != off {
			t.Fatalf("header_addr %#x load_addr %#x at file offset %#x", hdr, load, off)
		}
		if int(loadEnd-load) > len(b) || bssEnd < loadEnd || entry < load || entry >= loadEnd {
			t.Fatalf("load_end %#x bss_end %#x entry %#x, file %#x bytes", loadEnd, bssEnd, entry, len(b))
		}
		return
	}
	t.Fatal("no multiboot1 header in the first 8 KiB")
}

// TestMultiboot2Header checks GRUB's header: first 32 KiB, 8-aligned,
// checksum, address tag (2) and entry-address tag (3) (Multiboot2 sec. 3.1).
func TestMultiboot2Header(t *testing.T) {
	b := image(t)
	le := binary.LittleEndian
	for off := 0; off+16 <= len(b) && off < 32768; off += 8 {
		if le.Uint32(b[off:]) != 0xE85250D6 {
			continue
		}
		arch, length, sum := le.Uint32(b[off+4:]), le.Uint32(b[off+8:]), le.Uint32(b[off+12:])
		if 0xE85250D6+arch+length+sum != 0 || arch != 0 {
			t.Fatalf("multiboot2 checksum or architecture wrong")
		}
		tags := map[uint16]bool{}
		for p := off + 16; p < off+int(length); {
			typ, size := le.Uint16(b[p:]), le.Uint32(b[p+4:])
			tags[typ] = true
			if typ == 3 && le.Uint32(b[p+8:]) < loadAddr {
				t.Fatalf("entry address %#x below the load address", le.Uint32(b[p+8:]))
			}
			p += int((size + 7) &^ 7)
		}
		if !tags[2] || !tags[3] || !tags[0] {
			t.Fatalf("multiboot2 tags %v: need address (2), entry (3), end (0)", tags)
		}
		return
	}
	t.Fatal("no multiboot2 header in the first 32 KiB")
}

// TestGoLinkAddress: the Go image must sit above the layer's identity map
// and below the mmap space, page-aligned plus the ELF header page.
func TestGoLinkAddress(t *testing.T) {
	b, err := os.ReadFile("goldflags")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != "-T" {
		t.Fatalf("goldflags %q: want -T <addr>", b)
	}
	a, err := strconv.ParseUint(f[1], 0, 64)
	if err != nil || a&0xfff != 0x000 && a&0xfff != 0x1000&0xfff || a < 0x10000000 || a >= 0xc000000000 {
		t.Fatalf("text address %s", f[1])
	}
}

// TestDocListsEverySyscall keeps doc.go's table in step with syscall.c.
func TestDocListsEverySyscall(t *testing.T) {
	c, err := os.ReadFile("layer/syscall.c")
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`#define SYS_(\w+) (\d+)`).FindAllStringSubmatch(string(c), -1) {
		row := regexp.MustCompile(`//\s+` + m[2] + `\s+` + m[1] + `\b`)
		if !row.Match(d) && !strings.Contains(string(d), " "+m[2]+" ") {
			t.Errorf("doc.go has no row for syscall %s (%s)", m[1], m[2])
		}
	}
}
