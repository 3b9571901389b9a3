package pc

import (
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

func TestDirtyModeOf(t *testing.T) {
	for _, tc := range []struct {
		f    vmm.Features
		want DirtyMode
		text string
	}{
		{vmm.Features{EPTAccessedDirty: true, PML: true}, DirtyPML, "PML"},
		{vmm.Features{EPTAccessedDirty: true}, DirtyScan, "scan of EPT dirty flags (no PML)"},
		{vmm.Features{}, DirtyNone, "nothing (not tracked)"},
	} {
		if got := dirtyModeOf(tc.f); got != tc.want || got.String() != tc.text {
			t.Errorf("dirtyModeOf(%+v) = %v (%q), want %v (%q)", tc.f, got, got.String(), tc.want, tc.text)
		}
	}
	if r := (Report{}); r.Dirty.Mode != DirtyNone {
		t.Errorf("a Report's zero dirty mode is %v, want none (the AMD-V path fills nothing)", r.Dirty.Mode)
	}
}

type noInvalidate struct{}

func (noInvalidate) InvalidateSingleContext(uint64) error { return nil }

// simSpace is a guest of size bytes behind EPT tables with A/D flags in
// host memory, and a simulated CPU that sets the flags and logs to PML.
func simSpace(t *testing.T, size uint64) (*ept.Tables, *ept.SimCPU) {
	t.Helper()
	r, err := ept.NewRegion(1<<30, make([]byte, size+64*ept.PageSize))
	if err != nil {
		t.Fatal(err)
	}
	hpa, err := r.AllocGuestRAM(size, ept.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ept.New(r, noInvalidate{}, ept.Options{AccessedDirty: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Map(0, size, hpa, ept.PermRWX, ept.MapOpt{}); err != nil {
		t.Fatal(err)
	}
	return tb, ept.NewSimCPU(tb)
}

// TestDirtyTrackerScan: the scan counts each written page once and leaves
// every dirty flag clear, so the next VM in the same space starts clean.
func TestDirtyTrackerScan(t *testing.T) {
	const size = 64 * ept.PageSize
	tb, cpu := simSpace(t, size)
	written := []uint64{0, 3, 3, 17, 63}
	for _, p := range written {
		if err := cpu.Write32(p*ept.PageSize+8, 1); err != nil {
			t.Fatal(err)
		}
	}
	d := newDirtyTracker(DirtyScan, tb, size)
	r, err := d.finish()
	if err != nil {
		t.Fatal(err)
	}
	if r.Pages != 4 || r.Mode != DirtyScan {
		t.Errorf("first VM: %v, want 4 pages by scan", r)
	}
	if !strings.Contains(r.String(), "scan of EPT dirty flags (no PML): 4 pages written") {
		t.Errorf("report %q", r)
	}
	// The next VM in the space writes one page.
	if err := cpu.Write32(5*ept.PageSize, 1); err != nil {
		t.Fatal(err)
	}
	r, err = newDirtyTracker(DirtyScan, tb, size).finish()
	if err != nil {
		t.Fatal(err)
	}
	if r.Pages != 1 {
		t.Errorf("second VM in the same space: %d pages, want 1 (flags left set by the first?)", r.Pages)
	}
}

// TestDirtyTrackerPML: pages the log reported and pages only the final
// scan found are told apart and add up.
func TestDirtyTrackerPML(t *testing.T) {
	const size = 64 * ept.PageSize
	tb, cpu := simSpace(t, size)
	cpu.PML = true
	d := newDirtyTracker(DirtyPML, tb, size)
	for _, p := range []uint64{1, 2, 2, 9} {
		if err := cpu.Write32(p*ept.PageSize, 1); err != nil {
			t.Fatal(err)
		}
	}
	// The vCPU's drain (pmlLog.drain without the VMCS and INVEPT).
	if _, err := tb.DrainPML(&cpu.Log, cpu.Index, d.logged); err != nil {
		t.Fatal(err)
	}
	cpu.Index = ept.PMLIndexStart
	// A write whose log entry was lost (a translation cached with the
	// dirty flag set): only the scan sees it.
	cpu.PML = false
	if err := cpu.Write32(30*ept.PageSize, 1); err != nil {
		t.Fatal(err)
	}
	r, err := d.finish()
	if err != nil {
		t.Fatal(err)
	}
	if r.Logged != 3 || r.ScanOnly != 1 || r.Pages != 4 {
		t.Errorf("%+v: want 3 logged, 1 found by the scan only, 4 pages", r)
	}
	var total DirtyReport
	total.add(r)
	total.add(r)
	if total.Pages != 8 || total.Logged != 6 || total.Mode != DirtyPML {
		t.Errorf("sum of two VMs %+v", total)
	}
}
