package lapic

// xAPIC register offsets in the 4 KiB page at the APIC base (SDM Vol. 3A
// Table 11-1). The x2APIC MSR of a register is 0x800 + offset>>4 (Table
// 11-6).
const (
	RegID                = 0x020
	RegVersion           = 0x030
	RegTPR               = 0x080
	RegAPR               = 0x090
	RegPPR               = 0x0A0
	RegEOI               = 0x0B0
	RegRRD               = 0x0C0
	RegLDR               = 0x0D0
	RegDFR               = 0x0E0
	RegSVR               = 0x0F0
	RegISR               = 0x100 // 8 registers, 0x100-0x170
	RegTMR               = 0x180 // 8 registers, 0x180-0x1F0
	RegIRR               = 0x200 // 8 registers, 0x200-0x270
	RegESR               = 0x280
	RegLVTCMCI           = 0x2F0
	RegICRLow            = 0x300
	RegICRHigh           = 0x310
	RegLVTTimer          = 0x320
	RegLVTThermal        = 0x330
	RegLVTPerf           = 0x340
	RegLVTLINT0          = 0x350
	RegLVTLINT1          = 0x360
	RegLVTError          = 0x370
	RegTimerInitialCount = 0x380
	RegTimerCurrentCount = 0x390
	RegTimerDivide       = 0x3E0
	RegSelfIPI           = 0x3F0 // x2APIC only
)

// MSRs (SDM Vol. 4, Table 2-2).
const (
	MSRAPICBase    = 0x1B
	MSRTSCDeadline = 0x6E0
	MSRx2APICFirst = 0x800
	MSRx2APICLast  = 0x8FF
	MSRx2APICICR   = 0x830 // the 64-bit ICR (SDM Vol. 3A 11.12.9)
)

// IA32_APIC_BASE bits (SDM Vol. 3A 11.4.4, 11.12.1).
const (
	APICBaseBSP      = 1 << 8
	APICBaseExtd     = 1 << 10 // x2APIC mode
	APICBaseEnable   = 1 << 11 // APIC global enable
	APICBaseAddrMask = 0x000F_FFFF_FFFF_F000
	// DefaultBase is the xAPIC page's guest-physical address at reset.
	DefaultBase = 0xFEE00000
)

// Version register (SDM Vol. 3A 11.4.8): version 0x14 (integrated APIC),
// max LVT entry 5 (timer, thermal, perf, LINT0, LINT1, error; no CMCI),
// bit 24 (EOI-broadcast suppression) clear: it is not supported, so every
// EOI of a level vector is broadcast.
const versionValue = 5<<16 | 0x14

// Spurious-interrupt vector register bits (SDM Vol. 3A 11.9).
const (
	SVRVector        = 0xFF
	SVREnable        = 1 << 8
	SVRFocusDisabled = 1 << 9
	svrWritable      = SVRVector | SVREnable | SVRFocusDisabled
)

// LVT bits (SDM Vol. 3A 11.5.1, Figure 11-8).
const (
	LVTVector        = 0xFF
	LVTDeliveryMode  = 0x7 << 8
	LVTPending       = 1 << 12 // delivery status, read-only, always 0 here
	LVTActiveLow     = 1 << 13
	LVTRemoteIRR     = 1 << 14
	LVTLevel         = 1 << 15
	LVTMasked        = 1 << 16
	LVTTimerMode     = 0x3 << 17
	TimerOneShot     = 0 << 17
	TimerPeriodic    = 1 << 17
	TimerTSCDeadline = 2 << 17
)

// The LVT entries, in the order of their registers.
const (
	lvtTimer = iota
	lvtThermal
	lvtPerf
	lvtLINT0
	lvtLINT1
	lvtError
	numLVT
)

// lvtWritable is the writable bits of each LVT entry.
var lvtWritable = [numLVT]uint32{
	lvtTimer:   LVTVector | LVTMasked | LVTTimerMode,
	lvtThermal: LVTVector | LVTDeliveryMode | LVTMasked,
	lvtPerf:    LVTVector | LVTDeliveryMode | LVTMasked,
	lvtLINT0:   LVTVector | LVTDeliveryMode | LVTActiveLow | LVTLevel | LVTMasked,
	lvtLINT1:   LVTVector | LVTDeliveryMode | LVTActiveLow | LVTLevel | LVTMasked,
	lvtError:   LVTVector | LVTMasked,
}

// Error status register bits (SDM Vol. 3A 11.5.3).
const (
	ESRSendIllegalVector    = 1 << 5
	ESRReceiveIllegalVector = 1 << 6
	ESRIllegalRegister      = 1 << 7
)

// Interrupt command register bits (SDM Vol. 3A 11.6.1, Figure 11-12).
const (
	ICRVector       = 0xFF
	ICRDeliveryMode = 0x7 << 8
	ICRDestLogical  = 1 << 11
	ICRBusy         = 1 << 12 // delivery status, always 0 here
	ICRAssert       = 1 << 14
	ICRLevel        = 1 << 15
	ICRShorthand    = 0x3 << 18
	icrLowWritable  = 0x000CCFFF
)

// Destination shorthands (ICR bits 19:18).
const (
	ShorthandNone       = 0
	ShorthandSelf       = 1
	ShorthandAll        = 2
	ShorthandAllButSelf = 3
)

// Destination format models (DFR bits 31:28, SDM Vol. 3A 11.6.2.2).
const (
	DFRFlat    = 0xF
	DFRCluster = 0x0
)

// Divide configuration register (SDM Vol. 3A 11.5.4, Figure 11-10):
// bits 0, 1 and 3.
const tdcrWritable = 0xB
