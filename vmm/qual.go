package vmm

import (
	"fmt"
	"strings"
)

// IOQual is the exit qualification of an I/O instruction exit, SDM Vol. 3C
// 28.2.1, table 28-5.
type IOQual uint64

// I/O exit-qualification bits.
const (
	IOQualSizeMask  = 7      // bits 2:0: access size minus one (0, 1, 3)
	IOQualIn        = 1 << 3 // direction: 1 = IN, 0 = OUT
	IOQualString    = 1 << 4 // INS/OUTS
	IOQualREP       = 1 << 5 // REP prefix
	IOQualImmediate = 1 << 6 // operand encoding: 1 = immediate, 0 = DX
	IOQualPortShift = 16     // bits 31:16: port number
)

// Size returns the access size in bytes: 1, 2 or 4.
func (q IOQual) Size() int { return int(q&IOQualSizeMask) + 1 }

// In reports an IN or INS.
func (q IOQual) In() bool { return q&IOQualIn != 0 }

// String reports INS or OUTS.
func (q IOQual) StringOp() bool { return q&IOQualString != 0 }

// REP reports a REP prefix.
func (q IOQual) REP() bool { return q&IOQualREP != 0 }

// Port returns the port number.
func (q IOQual) Port() uint16 { return uint16(q >> IOQualPortShift) }

func (q IOQual) String() string {
	op := "out"
	if q.In() {
		op = "in"
	}
	if q.StringOp() {
		op += "s"
	}
	if q.REP() {
		op = "rep " + op
	}
	return fmt.Sprintf("%s port %#x size %d", op, q.Port(), q.Size())
}

// EPTViolationQual is the exit qualification of an EPT violation, SDM Vol.
// 3C 28.2.1, table 28-7.
type EPTViolationQual uint64

// EPT-violation exit-qualification bits.
const (
	EPTQualRead           = 1 << 0  // the access was a data read
	EPTQualWrite          = 1 << 1  // the access was a data write
	EPTQualFetch          = 1 << 2  // the access was an instruction fetch
	EPTQualReadable       = 1 << 3  // the GPA was readable (AND of bit 0 of the EPT entries)
	EPTQualWritable       = 1 << 4  // the GPA was writable
	EPTQualExecutable     = 1 << 5  // the GPA was executable
	EPTQualUserExecutable = 1 << 6  // user-mode executable (mode-based execute control)
	EPTQualLinearValid    = 1 << 7  // the guest linear-address field is valid
	EPTQualTranslation    = 1 << 8  // with bit 7: the access was to the translated address, not a paging entry
	EPTQualNMIUnblocking  = 1 << 12 // NMI unblocking due to IRET
	EPTQualShadowStack    = 1 << 13
	EPTQualAsynchronous   = 1 << 16 // the access was asynchronous to instruction execution
)

// Access returns the kind of access that faulted: "read", "write", "fetch"
// or a combination.
func (q EPTViolationQual) Access() string {
	var s []string
	for _, b := range []struct {
		bit  uint64
		name string
	}{{EPTQualRead, "read"}, {EPTQualWrite, "write"}, {EPTQualFetch, "fetch"}} {
		if uint64(q)&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "+")
}

// Mapped reports whether the GPA had any translation (some of bits 5:3):
// if not, the guest touched memory it does not have.
func (q EPTViolationQual) Mapped() bool {
	return q&(EPTQualReadable|EPTQualWritable|EPTQualExecutable) != 0
}

func (q EPTViolationQual) String() string {
	perm := []byte("---")
	if q&EPTQualReadable != 0 {
		perm[0] = 'r'
	}
	if q&EPTQualWritable != 0 {
		perm[1] = 'w'
	}
	if q&EPTQualExecutable != 0 {
		perm[2] = 'x'
	}
	s := fmt.Sprintf("%s, page %s", q.Access(), perm)
	if !q.Mapped() {
		s += " (not mapped)"
	}
	if q&EPTQualLinearValid != 0 && q&EPTQualTranslation == 0 {
		s += ", walking guest page tables"
	}
	return s
}

// EntryFailureDetail explains the exit qualification of a failed VM entry
// (exit reasons 33 and 34, SDM Vol. 3C 27.8 and 28.2.1).
func EntryFailureDetail(r ExitReasonBasic, qual uint64) string {
	switch r {
	case ExitInvalidGuestState:
		switch qual {
		case 2:
			return "invalid guest state, qualification 2: loading the PDPTEs failed"
		case 3:
			return "invalid guest state, qualification 3: NMI injection with NMIs blocked by the guest state"
		case 4:
			return "invalid guest state, qualification 4: invalid VMCS link pointer"
		}
		return fmt.Sprintf("invalid guest state, qualification %d: a guest-state field breaks the checks of SDM 27.3.1", qual)
	case ExitMSRLoading:
		return fmt.Sprintf("VM-entry MSR-load list entry %d failed", qual)
	case ExitMachineCheck:
		return "machine-check event during VM entry"
	}
	return fmt.Sprintf("%v, qualification %#x", r, qual)
}
