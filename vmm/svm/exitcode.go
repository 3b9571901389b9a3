package svm

import "fmt"

// ExitCode is the VMCB EXITCODE of a #VMEXIT, AMD APM Vol. 2 App. C
// "SVM Intercept Exit Codes".
type ExitCode uint64

// Exit codes doppel intercepts or names (App. C, table C-1).
const (
	ExitExceptionBase ExitCode = 0x40 // 0x40 + vector, 0x40-0x5F
	ExitIntr          ExitCode = 0x60
	ExitNMI           ExitCode = 0x61
	ExitSMI           ExitCode = 0x62
	ExitInit          ExitCode = 0x63
	ExitVIntr         ExitCode = 0x64
	ExitCR0SelWrite   ExitCode = 0x65
	ExitRDTSC         ExitCode = 0x6E
	ExitCPUID         ExitCode = 0x72
	ExitPause         ExitCode = 0x77
	ExitHLT           ExitCode = 0x78
	ExitINVLPGA       ExitCode = 0x7A
	ExitIOIO          ExitCode = 0x7B
	ExitMSR           ExitCode = 0x7C
	ExitTaskSwitch    ExitCode = 0x7D
	ExitShutdown      ExitCode = 0x7F
	ExitVMRUN         ExitCode = 0x80
	ExitVMMCALL       ExitCode = 0x81
	ExitVMLOAD        ExitCode = 0x82
	ExitVMSAVE        ExitCode = 0x83
	ExitSTGI          ExitCode = 0x84
	ExitCLGI          ExitCode = 0x85
	ExitSKINIT        ExitCode = 0x86
	ExitRDTSCP        ExitCode = 0x87
	ExitMONITOR       ExitCode = 0x8A
	ExitMWAIT         ExitCode = 0x8B
	ExitXSETBV        ExitCode = 0x8D
	ExitNPF           ExitCode = 0x400
	// ExitInvalid (VMEXIT_INVALID, -1): VMRUN found illegal guest state
	// in the VMCB (15.5.1 consistency checks).
	ExitInvalid ExitCode = 1<<64 - 1
)

var exitNames = map[ExitCode]string{
	ExitIntr: "INTR", ExitNMI: "NMI", ExitSMI: "SMI", ExitInit: "INIT", ExitVIntr: "VINTR",
	ExitCR0SelWrite: "CR0_SEL_WRITE", ExitRDTSC: "RDTSC", ExitCPUID: "CPUID", ExitPause: "PAUSE",
	ExitHLT: "HLT", ExitINVLPGA: "INVLPGA", ExitIOIO: "IOIO", ExitMSR: "MSR", ExitTaskSwitch: "TASK_SWITCH",
	ExitShutdown: "SHUTDOWN", ExitVMRUN: "VMRUN", ExitVMMCALL: "VMMCALL", ExitVMLOAD: "VMLOAD",
	ExitVMSAVE: "VMSAVE", ExitSTGI: "STGI", ExitCLGI: "CLGI", ExitSKINIT: "SKINIT", ExitRDTSCP: "RDTSCP",
	ExitXSETBV: "XSETBV", ExitNPF: "NPF", ExitInvalid: "INVALID",
}

func (c ExitCode) String() string {
	if n, ok := exitNames[c]; ok {
		return n
	}
	if c >= ExitExceptionBase && c < ExitExceptionBase+32 {
		return fmt.Sprintf("EXCP%d", uint64(c-ExitExceptionBase))
	}
	return fmt.Sprintf("EXITCODE(%#x)", uint64(c))
}

// IOIOInfo is EXITINFO1 of an IOIO intercept (15.10.2, figure 15-2).
type IOIOInfo uint64

// IOIO EXITINFO1 bits.
const (
	IOIOTypeIn = 1 << 0 // IN (1) or OUT (0)
	IOIOStr    = 1 << 2 // INS/OUTS
	IOIORep    = 1 << 3
	IOIOSz8    = 1 << 4
	IOIOSz16   = 1 << 5
	IOIOSz32   = 1 << 6
	IOIOA16    = 1 << 7 // address size
	IOIOA32    = 1 << 8
	IOIOA64    = 1 << 9
	IOIOPortSh = 16 // port in bits 31:16
)

// In reports an IN.
func (q IOIOInfo) In() bool { return q&IOIOTypeIn != 0 }

// String reports INS/OUTS.
func (q IOIOInfo) StringOp() bool { return q&IOIOStr != 0 }

// Port is the port accessed.
func (q IOIOInfo) Port() uint16 { return uint16(q >> IOIOPortSh) }

// Size is the operand size in bytes (0 if the bits are malformed).
func (q IOIOInfo) Size() int {
	switch {
	case q&IOIOSz8 != 0:
		return 1
	case q&IOIOSz16 != 0:
		return 2
	case q&IOIOSz32 != 0:
		return 4
	}
	return 0
}

func (q IOIOInfo) String() string {
	dir := "out"
	if q.In() {
		dir = "in"
	}
	s := fmt.Sprintf("%s port %#x size %d", dir, q.Port(), q.Size())
	if q.StringOp() {
		s += " string"
	}
	if q&IOIORep != 0 {
		s += " rep"
	}
	return s
}

// NPFInfo is EXITINFO1 of a nested page fault (15.25): a page-fault
// error code plus where in the walk the fault happened.
type NPFInfo uint64

// NPF EXITINFO1 bits (the #PF error code of Vol. 2 8.4.2, and 15.25).
const (
	NPFPresent    = 1 << 0 // the nested entry was present (protection fault)
	NPFWrite      = 1 << 1
	NPFUser       = 1 << 2
	NPFReserved   = 1 << 3 // a reserved bit was set in a nested entry
	NPFFetch      = 1 << 4
	NPFFinalGPA   = 1 << 32 // fault translating the final guest-physical address
	NPFGuestTable = 1 << 33 // fault translating a guest page-table address
)

func (q NPFInfo) String() string {
	acc := "read"
	switch {
	case q&NPFFetch != 0:
		acc = "fetch"
	case q&NPFWrite != 0:
		acc = "write"
	}
	s := acc
	if q&NPFPresent != 0 {
		s += ", present (protection)"
	} else {
		s += ", not present"
	}
	if q&NPFReserved != 0 {
		s += ", reserved bit"
	}
	if q&NPFGuestTable != 0 {
		s += ", guest page-table walk"
	}
	return s
}
