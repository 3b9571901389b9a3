package pc

import (
	"testing"

	"github.com/doppel-ft/doppel/vmm/loader"
)

func TestWithTSCRate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    loader.Kind
		cmdline string
		hz      uint64
		want    string
		added   bool
	}{
		{"linux", loader.KindBzImage, "console=ttyS0 panic=-1", 2_598_837_123, "console=ttyS0 panic=-1 tsc_early_khz=2598837", true},
		{"empty", loader.KindBzImage, "", 2_000_000_000, "tsc_early_khz=2000000", true},
		{"blank", loader.KindBzImage, "  ", 2_000_000_000, "tsc_early_khz=2000000", true},
		{"user's own", loader.KindBzImage, "tsc_early_khz=100 quiet", 2_000_000_000, "tsc_early_khz=100 quiet", false},
		{"similar name", loader.KindBzImage, "xtsc_early_khz=5", 3_000_000, "xtsc_early_khz=5 tsc_early_khz=3000", true},
		{"multiboot", loader.KindMultiboot1, "exit=5", 2_000_000_000, "exit=5", false},
		{"elf", loader.KindELF64, "", 2_000_000_000, "", false},
		{"no rate", loader.KindBzImage, "quiet", 0, "quiet", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, added := withTSCRate(tc.kind, tc.cmdline, tc.hz)
			if got != tc.want || added != tc.added {
				t.Errorf("withTSCRate(%v, %q, %d) = %q, %v; want %q, %v", tc.kind, tc.cmdline, tc.hz, got, added, tc.want, tc.added)
			}
		})
	}
}
