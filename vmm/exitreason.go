package vmm

import "fmt"

// ExitReasonBasic is the basic exit reason, bits 15:0 of the exit-reason
// VMCS field (SDM Vol. 3C 25.9.1; the numbers are App. C, table C-1).
type ExitReasonBasic uint16

// Basic exit reasons, App. C.
const (
	ExitExceptionOrNMI      ExitReasonBasic = 0
	ExitExternalInterrupt   ExitReasonBasic = 1
	ExitTripleFault         ExitReasonBasic = 2
	ExitINITSignal          ExitReasonBasic = 3
	ExitSIPI                ExitReasonBasic = 4
	ExitIOSMI               ExitReasonBasic = 5
	ExitOtherSMI            ExitReasonBasic = 6
	ExitInterruptWindow     ExitReasonBasic = 7
	ExitNMIWindow           ExitReasonBasic = 8
	ExitTaskSwitch          ExitReasonBasic = 9
	ExitCPUID               ExitReasonBasic = 10
	ExitGETSEC              ExitReasonBasic = 11
	ExitHLT                 ExitReasonBasic = 12
	ExitINVD                ExitReasonBasic = 13
	ExitINVLPG              ExitReasonBasic = 14
	ExitRDPMC               ExitReasonBasic = 15
	ExitRDTSC               ExitReasonBasic = 16
	ExitRSM                 ExitReasonBasic = 17
	ExitVMCALL              ExitReasonBasic = 18
	ExitVMCLEAR             ExitReasonBasic = 19
	ExitVMLAUNCH            ExitReasonBasic = 20
	ExitVMPTRLD             ExitReasonBasic = 21
	ExitVMPTRST             ExitReasonBasic = 22
	ExitVMREAD              ExitReasonBasic = 23
	ExitVMRESUME            ExitReasonBasic = 24
	ExitVMWRITE             ExitReasonBasic = 25
	ExitVMXOFF              ExitReasonBasic = 26
	ExitVMXON               ExitReasonBasic = 27
	ExitCRAccess            ExitReasonBasic = 28
	ExitMOVDR               ExitReasonBasic = 29
	ExitIOInstruction       ExitReasonBasic = 30
	ExitRDMSR               ExitReasonBasic = 31
	ExitWRMSR               ExitReasonBasic = 32
	ExitInvalidGuestState   ExitReasonBasic = 33
	ExitMSRLoading          ExitReasonBasic = 34
	ExitMWAIT               ExitReasonBasic = 36
	ExitMonitorTrapFlag     ExitReasonBasic = 37
	ExitMONITOR             ExitReasonBasic = 39
	ExitPAUSE               ExitReasonBasic = 40
	ExitMachineCheck        ExitReasonBasic = 41
	ExitTPRBelowThreshold   ExitReasonBasic = 43
	ExitAPICAccess          ExitReasonBasic = 44
	ExitVirtualizedEOI      ExitReasonBasic = 45
	ExitGDTRIDTRAccess      ExitReasonBasic = 46
	ExitLDTRTRAccess        ExitReasonBasic = 47
	ExitEPTViolation        ExitReasonBasic = 48
	ExitEPTMisconfig        ExitReasonBasic = 49
	ExitINVEPT              ExitReasonBasic = 50
	ExitRDTSCP              ExitReasonBasic = 51
	ExitPreemptionTimer     ExitReasonBasic = 52
	ExitINVVPID             ExitReasonBasic = 53
	ExitWBINVD              ExitReasonBasic = 54
	ExitXSETBV              ExitReasonBasic = 55
	ExitAPICWrite           ExitReasonBasic = 56
	ExitRDRAND              ExitReasonBasic = 57
	ExitINVPCID             ExitReasonBasic = 58
	ExitVMFUNC              ExitReasonBasic = 59
	ExitENCLS               ExitReasonBasic = 60
	ExitRDSEED              ExitReasonBasic = 61
	ExitPMLFull             ExitReasonBasic = 62
	ExitXSAVES              ExitReasonBasic = 63
	ExitXRSTORS             ExitReasonBasic = 64
	ExitPCONFIG             ExitReasonBasic = 65
	ExitSPPEvent            ExitReasonBasic = 66
	ExitUMWAIT              ExitReasonBasic = 67
	ExitTPAUSE              ExitReasonBasic = 68
	ExitLOADIWKEY           ExitReasonBasic = 69
	ExitENCLV               ExitReasonBasic = 70
	ExitENQCMDPASIDFailure  ExitReasonBasic = 72
	ExitENQCMDSPASIDFailure ExitReasonBasic = 73
	ExitBusLock             ExitReasonBasic = 74
	ExitInstructionTimeout  ExitReasonBasic = 75

	// NumExitReasons bounds the basic exit reasons doppel counts.
	NumExitReasons = 80
)

var exitReasonNames = [NumExitReasons]string{
	0: "exception or NMI", 1: "external interrupt", 2: "triple fault", 3: "INIT signal",
	4: "start-up IPI", 5: "I/O SMI", 6: "other SMI", 7: "interrupt window", 8: "NMI window",
	9: "task switch", 10: "CPUID", 11: "GETSEC", 12: "HLT", 13: "INVD", 14: "INVLPG",
	15: "RDPMC", 16: "RDTSC", 17: "RSM", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH",
	21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMXOFF",
	27: "VMXON", 28: "control-register access", 29: "MOV DR", 30: "I/O instruction",
	31: "RDMSR", 32: "WRMSR", 33: "VM-entry failure: invalid guest state",
	34: "VM-entry failure: MSR loading", 36: "MWAIT", 37: "monitor trap flag", 39: "MONITOR",
	40: "PAUSE", 41: "VM-entry failure: machine-check event", 43: "TPR below threshold",
	44: "APIC access", 45: "virtualized EOI", 46: "GDTR/IDTR access", 47: "LDTR/TR access",
	48: "EPT violation", 49: "EPT misconfiguration", 50: "INVEPT", 51: "RDTSCP",
	52: "VMX-preemption timer expired", 53: "INVVPID", 54: "WBINVD/WBNOINVD", 55: "XSETBV",
	56: "APIC write", 57: "RDRAND", 58: "INVPCID", 59: "VMFUNC", 60: "ENCLS", 61: "RDSEED",
	62: "page-modification log full", 63: "XSAVES", 64: "XRSTORS", 65: "PCONFIG",
	66: "SPP-related event", 67: "UMWAIT", 68: "TPAUSE", 69: "LOADIWKEY", 70: "ENCLV",
	72: "ENQCMD PASID translation failure", 73: "ENQCMDS PASID translation failure",
	74: "bus lock", 75: "instruction timeout",
}

func (r ExitReasonBasic) String() string {
	if int(r) < len(exitReasonNames) && exitReasonNames[r] != "" {
		return exitReasonNames[r]
	}
	return fmt.Sprintf("exit reason %d", uint16(r))
}

// Exit-reason field bits above the basic reason, 25.9.1 table 25-18.
const (
	ExitReasonEnclaveMode  = 1 << 27
	ExitReasonPendingMTF   = 1 << 28
	ExitReasonFromVMXRoot  = 1 << 29
	ExitReasonEntryFailure = 1 << 31
)

// ExitReasonField decodes the full 32-bit exit-reason field.
type ExitReasonField uint32

// Basic returns bits 15:0.
func (f ExitReasonField) Basic() ExitReasonBasic { return ExitReasonBasic(f) }

// EntryFailure reports bit 31: the exit is a failed VM entry.
func (f ExitReasonField) EntryFailure() bool { return f&ExitReasonEntryFailure != 0 }

// VMInstructionErrorNumber is the VM-instruction error field, SDM Vol. 3C
// 31.4, table 31-1, read after a VMX instruction fails with ZF=1.
type VMInstructionErrorNumber uint32

var vmInstructionErrors = [...]string{
	1:  "VMCALL executed in VMX root operation",
	2:  "VMCLEAR with invalid physical address",
	3:  "VMCLEAR with VMXON pointer",
	4:  "VMLAUNCH with non-clear VMCS",
	5:  "VMRESUME with non-launched VMCS",
	6:  "VMRESUME after VMXOFF",
	7:  "VM entry with invalid control field(s)",
	8:  "VM entry with invalid host-state field(s)",
	9:  "VMPTRLD with invalid physical address",
	10: "VMPTRLD with VMXON pointer",
	11: "VMPTRLD with incorrect VMCS revision identifier",
	12: "VMREAD/VMWRITE from/to unsupported VMCS component",
	13: "VMWRITE to read-only VMCS component",
	15: "VMXON executed in VMX root operation",
	16: "VM entry with invalid executive-VMCS pointer",
	17: "VM entry with non-launched executive VMCS",
	18: "VM entry with executive-VMCS pointer not VMXON pointer",
	19: "VMCALL with non-clear VMCS",
	20: "VMCALL with invalid VM-exit control fields",
	22: "VMCALL with incorrect MSEG revision identifier",
	23: "VMXOFF under dual-monitor treatment of SMIs and SMM",
	24: "VMCALL with invalid SMM-monitor features",
	25: "VM entry with invalid VM-execution control fields in executive VMCS",
	26: "VM entry with events blocked by MOV SS",
	28: "invalid operand to INVEPT/INVVPID",
}

func (e VMInstructionErrorNumber) String() string {
	if int(e) < len(vmInstructionErrors) && vmInstructionErrors[e] != "" {
		return fmt.Sprintf("VM-instruction error %d: %s", uint32(e), vmInstructionErrors[e])
	}
	return fmt.Sprintf("VM-instruction error %d", uint32(e))
}
