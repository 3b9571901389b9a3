package pci

import (
	"testing"

	"github.com/doppel-ft/doppel/board"
)

// TestEnumerateBareMetal enumerates the real (emulated) machine under the
// boot layer (qemu-test/gotest_test.go runs this package as the kernel):
// a host bridge at 00:00.0, BARs left as the firmware assigned them, and
// the same result twice.
func TestEnumerateBareMetal(t *testing.T) {
	if !board.OnBareMetal() {
		t.Skip("reads the machine's PCI configuration space: runs only under the doppel boot layer")
	}
	cfg, how := Open()
	t.Logf("configuration access: %s", how)
	var before []uint32
	first := Enumerate(cfg)
	for _, d := range first {
		t.Logf("%v", &d)
		for i := 0; i < 6; i++ {
			before = append(before, Read32(cfg, d.Addr, uint16(BAR0+4*i)))
		}
	}
	if len(first) < 2 || first[0].Addr != (Addr{}) || first[0].Class>>8 != 0x0600 {
		t.Fatalf("want a host bridge at 00:00.0 first, got %d functions", len(first))
	}
	second := Enumerate(cfg)
	if len(second) != len(first) {
		t.Fatalf("second enumeration found %d functions, first %d", len(second), len(first))
	}
	var after []uint32
	for i, d := range second {
		if d.String() != first[i].String() {
			t.Errorf("function %d differs:\n%v\n%v", i, &first[i], &d)
		}
		for j := 0; j < 6; j++ {
			after = append(after, Read32(cfg, d.Addr, uint16(BAR0+4*j)))
		}
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("BAR register %d changed by sizing: %#x -> %#x", i, before[i], after[i])
		}
	}
}
