package vmm

import "testing"

// TestRestoredEntryControls: a restored VT-x vCPU keeps its own entry
// controls but takes the guest's IA-32e mode from the saved state.
func TestRestoredEntryControls(t *testing.T) {
	own := uint32(EntryLoadIA32EFER | EntryLoadIA32PAT | EntryLoadDebugControls)
	tests := []struct {
		name  string
		own   uint32
		saved uint64
		want  uint64
	}{
		// AMD-V's view saves the IA-32e bit alone.
		{"from AMD-V, 64-bit", own, EntryIA32eModeGuest, uint64(own) | EntryIA32eModeGuest},
		// An older doppel set no debug controls.
		{"older doppel, 32-bit", own, EntryLoadIA32EFER | EntryLoadIA32PAT, uint64(own)},
		// A vCPU created for a 64-bit start restoring a 32-bit guest.
		{"64-bit vCPU, 32-bit guest", own | EntryIA32eModeGuest, EntryLoadIA32EFER, uint64(own)},
		// Bits this vCPU does not set (entry to SMM) do not come along.
		{"foreign bits", own, EntryToSMM | EntryIA32eModeGuest, uint64(own) | EntryIA32eModeGuest},
	}
	for _, tc := range tests {
		if got := restoredEntryControls(tc.own, tc.saved); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
