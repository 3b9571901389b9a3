package svm

import (
	"testing"

	"github.com/doppel-ft/doppel/ept"
)

// TestNewVCPUFlushesFirst: each SVM hands out ASIDs from 1, so a vCPU of a
// new VM reuses the ASID of one before it (the restore test rebuilds the
// VM over other tables): its first VMRUN must flush that ASID's
// translations, and its frames must be the region's, page aligned.
func TestNewVCPUFlushesFirst(t *testing.T) {
	r, err := ept.NewHostRegion(0x4000_0000, 64*4096)
	if err != nil {
		t.Fatal(err)
	}
	for vm := range 2 {
		s := &SVM{Features: Features{NASID: 16}, frames: r, nextASID: 1}
		h, err := s.NewVCPU(GuestConfig{NCR3: 0x1000})
		if err != nil {
			t.Fatal(err)
		}
		if h.ASID != 1 || !h.flush {
			t.Errorf("VM %d: ASID %d, flush %v; want ASID 1 flushed at the first VMRUN", vm, h.ASID, h.flush)
		}
		if h.vmcbPA%4096 != 0 || h.vmcbPA < r.Base() || h.vmcbPA >= r.End() {
			t.Errorf("VMCB at %#x, outside the region [%#x, %#x)", h.vmcbPA, r.Base(), r.End())
		}
	}
}
