package bytesize

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"256m", 256 << 20, false},
		{"256M", 256 << 20, false},
		{"256MB", 256 << 20, false},
		{"256mb", 256 << 20, false},
		{"256MiB", 256 << 20, false},
		{"256mib", 256 << 20, false},
		{"1g", 1 << 30, false},
		{"1G", 1 << 30, false},
		{"1GB", 1 << 30, false},
		{"1GiB", 1 << 30, false},
		{"64K", 64 << 10, false},
		{"64KiB", 64 << 10, false},
		{"2T", 2 << 40, false},
		{"2TiB", 2 << 40, false},
		{"18446744073709551615", 1<<64 - 1, false},
		{"16777215T", 16777215 << 40, false},
		{"", 0, true},
		{"m", 0, true},
		{"MiB", 0, true},
		{"B", 0, true},
		{"iB", 0, true},
		{"12B", 12, false},
		{"12b", 12, false},
		{"1BB", 0, true},
		{"1KBB", 0, true},
		{"12iB", 0, true},
		{"1.5G", 0, true},
		{"-1", 0, true},
		{"+1", 0, true},
		{" 1G", 0, true},
		{"1G ", 0, true},
		{"1X", 0, true},
		{"1GG", 0, true},
		{"1Gi", 0, true},
		{"0x10", 0, true},
		{"18446744073709551616", 0, true},
		{"16777216T", 0, true},
		{"99999999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%q) error %v does not wrap ErrSyntax", tt.in, err)
			}
			if !strings.Contains(err.Error(), `"`+tt.in+`"`) || !strings.Contains(err.Error(), "256MiB") {
				t.Errorf("Parse(%q) error %q must name the value and the accepted forms", tt.in, err)
			}
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 4096: "4K", 4097: "4097", 1 << 30: "1G", 3 << 29: "1536M", 2 << 40: "2T", 1<<64 - 1: "18446744073709551615"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, back, err)
		}
	}
}

// FuzzParse checks that Parse never panics, that what it accepts formats
// back to the same value, and that a refusal names the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"4096", "256m", "256MB", "256MiB", "1GiB", "2T", "", "1.5G", "18446744073709551616", "kib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Fatalf("Parse(%q) = %d; Parse(Format) = %d, %v", s, n, back, err)
		}
	})
}
