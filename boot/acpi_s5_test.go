package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/acpi"
)

// The boot layer finds how to power off (S5) in the firmware's FADT and
// DSDT (boot/layer/acpi.c). Only a machine's own tables exercise it under
// the emulators, so TestS5FromTables compiles that C code for the host,
// with a harness that maps a blob of tables where the code expects
// physical memory, and checks what it reports for tables like those of
// real firmware, and that on broken ones it reads nothing outside them
// (AddressSanitizer and UBSan, which also found the XSDT's 64-bit
// entries read as aligned).

// harness includes acpi.c with P2V pointing into the blob. rsdp_phys is
// the layer's pointer to the RSDP (multiboot's copy), a virtual address.
const harness = `#include "layer.h"
#undef P2V
static u64 host_off;
#define P2V(pa) ((void *)((u64)(pa) + host_off))
u64 rsdp_phys;
u32 lapic_id(void) { return 0; }
void udelay(u64 us) { (void)us; }
int vprintf(const char *, va_list);
void kprintf(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}
#include "acpi.c"
#include "blob.h"
int main(void) {
	host_off = (u64)blob - BLOB_BASE;
	rsdp_phys = (u64)blob;
	acpi_init();
	return 0;
}
`

const blobBase = 0xE0000

// acpiDone is acpi_init's last line, with or without a MADT.
var acpiDone = regexp.MustCompile(`boot: acpi: \d+ cpus|boot: no ACPI MADT`)

// sdt is an ACPI table: the 36-byte header, then body.
func sdt(sig string, rev byte, body []byte) []byte {
	b := make([]byte, 36, 36+len(body))
	copy(b, sig)
	binary.LittleEndian.PutUint32(b[4:], uint32(36+len(body)))
	b[8] = rev
	copy(b[10:], "DOPPEL")
	b = append(b, body...)
	var sum byte
	for _, c := range b {
		sum += c
	}
	b[9] = -sum
	return b
}

// firmware lays out RSDP, XSDT, FADT and DSDT at blobBase, the FADT
// filled in by fadt (given the DSDT's address) to the length n.
func firmware(n int, fadt func(f []byte, dsdt uint64), aml []byte) []byte {
	const xsdtOff, fadtOff = 48, 96
	dsdtOff := fadtOff + (n+15)&^15
	f := make([]byte, n)
	fadt(f, blobBase+uint64(dsdtOff))
	fb := sdt("FACP", 6, f[36:])
	out := make([]byte, dsdtOff)
	copy(out, "RSD PTR ")
	out[15] = 2
	binary.LittleEndian.PutUint32(out[20:], 36)
	binary.LittleEndian.PutUint64(out[24:], blobBase+xsdtOff)
	xsdt := sdt("XSDT", 1, binary.LittleEndian.AppendUint64(nil, blobBase+fadtOff))
	copy(out[xsdtOff:], xsdt)
	copy(out[fadtOff:], fb)
	return append(out, sdt("DSDT", 2, aml)...)
}

// legacyFADT is a revision-1 FADT (116 bytes): 32-bit DSDT and PM1 ports.
func legacyFADT(pm1a, pm1b uint32) func([]byte, uint64) {
	return func(f []byte, dsdt uint64) {
		le := binary.LittleEndian
		le.PutUint32(f[40:], uint32(dsdt))
		le.PutUint32(f[48:], 0xB2) // SMI_CMD
		f[52] = 0xF1               // ACPI_ENABLE
		le.PutUint32(f[64:], pm1a)
		le.PutUint32(f[68:], pm1b)
	}
}

// gasFADT is a revision-6 FADT (276 bytes) whose X_DSDT and
// X_PM1a_CNT_BLK (in space, I/O 1 or memory 0) are the ones to use: the
// 32-bit fields hold decoys.
func gasFADT(space byte, pm1a uint64) func([]byte, uint64) {
	return func(f []byte, dsdt uint64) {
		le := binary.LittleEndian
		le.PutUint32(f[40:], 0xDEAD0000) // DSDT, overridden by X_DSDT
		le.PutUint32(f[64:], 0x9994)     // PM1a_CNT_BLK, overridden
		le.PutUint64(f[140:], dsdt)
		f[172], f[173] = space, 16
		le.PutUint64(f[176:], pm1a)
	}
}

// s5 is AML for Name(\_S5, Package(4){a, b, 0, 0}) with the given
// encodings of the first two elements, optionally root-prefixed, and with
// a PkgLength of two bytes where long is set.
func s5(root, long bool, a, b []byte) []byte {
	name := []byte{0x08}
	if root {
		name = append(name, '\\')
	}
	name = append(name, "_S5_"...)
	elems := append(append(append([]byte{4}, a...), b...), 0x00, 0x00)
	pkg := []byte{0x12}
	if long {
		n := len(elems) + 2
		pkg = append(pkg, 0x40|byte(n&0x0F), byte(n>>4))
	} else {
		pkg = append(pkg, byte(len(elems)+1))
	}
	return append(append(name, pkg...), elems...)
}

// scope wraps aml in Scope(\_SB) so that \_S5 is not the first thing in
// the DSDT, and adds a decoy: a method whose name merely contains "_S5".
func scope(aml []byte) []byte {
	decoy := []byte{0x14, 0x0B, 'X', '_', 'S', '5', 0x00, 0xA4, 0x0A, 0x07} // Method(X_S5) { Return(7) }
	sb := append([]byte{0x10, byte(6 + len(decoy)), '\\', '_', 'S', 'B', '_'}, decoy...)
	return append(sb, aml...)
}

// sanitizers are the gcc flags that make the harness fail on any read
// outside the blob (the DSDT comes last in it) or undefined behaviour,
// where this gcc has them.
func sanitizers(t *testing.T, cc string) []string {
	flags := []string{"-fsanitize=address,undefined", "-fno-sanitize-recover=all"}
	dir := t.TempDir()
	src := filepath.Join(dir, "probe.c")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command(cc, append(flags, "-o", bin, src)...).CombinedOutput(); err != nil {
		t.Logf("no sanitizers in this gcc (%v: %s): out-of-bounds reads go unseen", err, out)
		return nil
	}
	if err := exec.Command(bin).Run(); err != nil {
		t.Logf("sanitized programs do not run here (%v): out-of-bounds reads go unseen", err)
		return nil
	}
	return flags
}

// garbageAML is random AML ending in a \_S5 header cut after cut bytes:
// whatever acpi.c says of it, it must not read past the end (with the
// sanitizers, reading the byte after a BytePrefix that ends the table
// fails the harness).
func garbageAML(seed, cut int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	tail := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x06, 0x02, 0x0A, 0x07, 0x0A, 0x07}
	return append(b, tail[:cut]...)
}

func TestS5FromTables(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc builds the boot layer and this test: %v", err)
	}
	sanitize := sanitizers(t, cc)
	layer, err := filepath.Abs("layer")
	if err != nil {
		t.Fatal(err)
	}
	own, err := acpi.Build(acpi.Config{NumCPUs: 2, COM1: true}, blobBase)
	if err != nil {
		t.Fatal(err)
	}
	zero, one := []byte{0x00}, []byte{0x01}
	for _, tc := range []struct {
		name string
		blob []byte
		want string
	}{
		{"doppel's guest tables (HW-reduced)", own.Bytes,
			fmt.Sprintf("S5 is SLP_TYP %d at the sleep control register (port 0x600)", acpi.S5SleepType)},
		{"PIIX4, ZeroOp", firmware(116, legacyFADT(0x604, 0), s5(false, false, zero, zero)),
			"S5 is SLP_TYP 0/0 at PM1a_CNT port 0x604, PM1b_CNT 0x0"},
		{"root prefix, OneOp, PM1b", firmware(116, legacyFADT(0xB004, 0xB044), scope(s5(true, false, one, zero))),
			"S5 is SLP_TYP 1/0 at PM1a_CNT port 0xb004, PM1b_CNT 0xb044"},
		{"PCH: BytePrefix 7, long PkgLength, X_ fields", firmware(276, gasFADT(1, 0x1804), scope(s5(true, true, []byte{0x0A, 7}, []byte{0x0A, 7}))),
			"S5 is SLP_TYP 7/7 at PM1a_CNT port 0x1804, PM1b_CNT 0x0"},
		{"memory-space PM1a, WordPrefix", firmware(276, gasFADT(0, 0xFED80004), s5(false, false, []byte{0x0B, 5, 0}, zero)),
			"S5 is SLP_TYP 5/0 at PM1a_CNT memory 0xfed80004"},
		{"PCI-space X_PM1a: the legacy port", firmware(276, func(f []byte, dsdt uint64) {
			gasFADT(2, 0x1804)(f, dsdt)
			binary.LittleEndian.PutUint32(f[64:], 0x604)
		}, s5(false, false, zero, zero)),
			"S5 is SLP_TYP 0/0 at PM1a_CNT port 0x604"},
		{"no \\_S5", firmware(116, legacyFADT(0x604, 0), scope(nil)),
			"no \\_S5 package in the DSDT"},
		{"\\_S5 a method computes", firmware(116, legacyFADT(0x604, 0), []byte{0x14, 0x09, '_', 'S', '5', '_', 0x00, 0xA4, 0x0A, 0x05}),
			"no \\_S5 package in the DSDT"},
		{"DSDT cut inside \\_S5", firmware(116, legacyFADT(0x604, 0), s5(false, false, zero, zero)[:8]),
			"no \\_S5 package in the DSDT"},
		{"DSDT length corrupt", func() []byte {
			b := firmware(116, legacyFADT(0x604, 0), s5(false, false, zero, zero))
			binary.LittleEndian.PutUint32(b[bytes.LastIndex(b, []byte("DSDT"))+4:], 0x7FFFFFF0)
			return b
		}(), "DSDT length 2147483632 implausible"},
		{"garbage ending after PackageOp", firmware(116, legacyFADT(0x604, 0), garbageAML(1, 7)), ""},
		{"garbage ending after PkgLength", firmware(116, legacyFADT(0x604, 0), garbageAML(2, 8)), ""},
		{"garbage ending after NumElements", firmware(116, legacyFADT(0x604, 0), garbageAML(3, 9)), ""},
		{"garbage ending after a BytePrefix", firmware(116, legacyFADT(0x604, 0), garbageAML(4, 10)), ""},
		{"garbage ending after the second BytePrefix", firmware(116, legacyFADT(0x604, 0), garbageAML(5, 12)), ""},
		{"DSDT address wrong", firmware(116, func(f []byte, _ uint64) { legacyFADT(0x604, 0)(f, blobBase) }, s5(false, false, zero, zero)),
			"no DSDT at 0xe0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var h strings.Builder
			fmt.Fprintf(&h, "#define BLOB_BASE 0x%xULL\nstatic u8 blob[%d] __attribute__((aligned(16))) = {", blobBase, len(tc.blob))
			for i, c := range tc.blob {
				if i%16 == 0 {
					h.WriteString("\n")
				}
				fmt.Fprintf(&h, "%d,", c)
			}
			h.WriteString("\n};\n")
			for name, text := range map[string]string{"blob.h": h.String(), "harness.c": harness} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			bin := filepath.Join(dir, "harness")
			args := append([]string{"-std=gnu11", "-O1", "-g", "-w", "-I", layer, "-I", dir}, sanitize...)
			if out, err := exec.Command(cc, append(args, "-o", bin, filepath.Join(dir, "harness.c"))...).CombinedOutput(); err != nil {
				t.Fatalf("compiling acpi.c for the host: %v\n%s", err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil {
				t.Fatalf("harness: %v\n%s", err, out)
			}
			if !acpiDone.Match(out) {
				t.Errorf("acpi_init did not finish:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("acpi.c said:\n%s\nwant a line with %q", out, tc.want)
			}
		})
	}
}
