package board

import (
	"strings"
	"testing"
)

func TestParseMemmapFiles(t *testing.T) {
	tests := []struct {
		file                     string
		regions                  int
		usable, reserved, kernel uint64
		first                    Region
	}{
		{
			file:     "memmap-qemu-4g.txt",
			regions:  10,
			usable:   0x9fc00 + (0xbffe0000 - 0x4000000) + (0x13c000000 - 0x100000000),
			reserved: 64 << 20,
			kernel:   0x4000000 - 0x100000,
			first:    Region{0, 0x9fc00, RegionUsable},
		},
		{
			// Carve-outs listed on top of usable RAM, overlapping each
			// other, out of order, with a type this parser does not know.
			file:     "memmap-overlapping-carveouts.txt",
			regions:  6,
			usable:   0x9fc00 + (0x80000000 - 0x100000) - (0x3000000 - 0x100000) - (0x80000000 - 0x7c000000),
			reserved: 0x80000000 - 0x7c000000,
			kernel:   0x2000000 - 0x100000,
			first:    Region{0, 0x9fc00, RegionUsable},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := ParseMemmap(openTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != tt.regions || m[0] != tt.first {
				t.Fatalf("got %d regions starting %v; want %d starting %v", len(m), m[0], tt.regions, tt.first)
			}
			for i := 1; i < len(m); i++ {
				if m[i].Start < m[i-1].Start {
					t.Errorf("not sorted: %v before %v", m[i-1], m[i])
				}
			}
			if got := m.Usable(); got != tt.usable {
				t.Errorf("Usable() = %#x, want %#x", got, tt.usable)
			}
			if got := m.Total(RegionDoppelReserved); got != tt.reserved {
				t.Errorf("reserved = %#x, want %#x", got, tt.reserved)
			}
			if got := m.Total(RegionKernel); got != tt.kernel {
				t.Errorf("kernel = %#x, want %#x", got, tt.kernel)
			}
		})
	}
}

func TestParseMemmapErrors(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"0x0 0x1000", "line 1"},
		{"0x0 0x1000 usable extra", "want \"0x<start> 0x<end> <type>\""},
		{"0x0 0x1000 usable\n1000 0x2000 usable", "line 2: start: \"1000\": want 0x-prefixed hex"},
		{"0x0 0xzz usable", "end: \"0xzz\""},
		{"0x2000 0x1000 usable", "inverted region 0x2000-0x1000"},
		{"0x1000 0x1000 usable", "empty or inverted"},
		{"0x0 0x10000000000000000 usable", "want 0x-prefixed hex"},
	}
	for _, tt := range tests {
		_, err := ParseMemmap(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "board: memmap: ") {
			t.Errorf("ParseMemmap(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestMemmapReport(t *testing.T) {
	m, err := ParseMemmap(openTestdata(t, "memmap-qemu-4g.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := m.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"memory map: 10 regions\n",
		"  0x0000000000000000-0x000000000009fc00     639K usable\n",
		"usable RAM 3968 MiB (3.88G, after carve-outs)\n",
		"doppel-reserved: 64M at 0x13c000000-0x140000000\n",
		"kernel: 63M at 0x100000-0x4000000\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0B", 1023: "1023B", 1024: "1K", 0x9fc00: "639K", 64 << 20: "64M", 3<<30 + 1<<29: "3.50G", 1 << 40: "1T",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
