package cpu

// CPUID leaves (SDM Vol. 2A ch. 3, Table 3-8 "Information Returned by CPUID").
const (
	LeafVendor           = 0x00 // max basic leaf in EAX, vendor in EBX, EDX, ECX
	LeafFeatures         = 0x01 // version in EAX, APIC ID in EBX, feature flags in ECX, EDX
	LeafTopology         = 0x0B // extended topology; x2APIC ID in EDX
	LeafTSCCrystal       = 0x15 // TSC / core crystal clock ratio
	LeafProcessorFreq    = 0x16 // base / max / bus frequency in MHz
	LeafExtendedMax      = 0x80000000
	LeafExtendedFeatures = 0x80000001
	LeafBrand0           = 0x80000002 // brand string, 16 bytes a leaf
	LeafBrand1           = 0x80000003
	LeafBrand2           = 0x80000004
	LeafPowerManagement  = 0x80000007 // invariant TSC in EDX
)

// CPUID.01H:ECX feature bits (SDM Vol. 2A, Table 3-10).
const (
	CPUID_01_ECX_VMX        = 5  // Virtual Machine Extensions
	CPUID_01_ECX_HYPERVISOR = 31 // reserved by Intel, set by hypervisors for their guests
)

// CPUID.01H:EDX feature bits (SDM Vol. 2A, Table 3-11).
const (
	CPUID_01_EDX_TSC = 4 // time-stamp counter
	CPUID_01_EDX_MSR = 5 // RDMSR and WRMSR
)

// CPUID.80000001H feature bits (SDM Vol. 2A ch. 3; AMD APM Vol. 3, Appendix E
// for SVM).
const (
	CPUID_80000001_ECX_SVM    = 2  // AMD Secure Virtual Machine
	CPUID_80000001_EDX_RDTSCP = 27 // RDTSCP and IA32_TSC_AUX
)

// CPUID.80000007H:EDX bits (SDM Vol. 2A ch. 3).
const (
	CPUID_80000007_EDX_INVARIANT_TSC = 8
)

// MSR addresses (SDM Vol. 4, chapter 2, Table 2-2 "IA-32 Architectural MSRs").
const (
	IA32_FEATURE_CONTROL = 0x3A
	IA32_VMX_BASIC       = 0x480
	IA32_TSC_AUX         = 0xC0000103
)

// IA32_FEATURE_CONTROL bits (SDM Vol. 4 Table 2-2; Vol. 3C section 24.7
// "Enabling and Entering VMX Operation").
const (
	FEATURE_CONTROL_LOCKED             = 0 // lock bit: the MSR is read-only until reset
	FEATURE_CONTROL_VMX_INSIDE_SMX     = 1 // VMXON allowed inside SMX operation
	FEATURE_CONTROL_VMX_OUTSIDE_SMX    = 2 // VMXON allowed outside SMX operation
	FEATURE_CONTROL_SENTER_LOCAL_MASK  = 0x7f << 8
	FEATURE_CONTROL_SENTER_GLOBAL_ENAB = 15
)

// CR0 bits (SDM Vol. 3A section 2.5, Figure 2-7).
const (
	CR0_PE = 0  // protection enable
	CR0_MP = 1  // monitor coprocessor
	CR0_EM = 2  // x87 emulation
	CR0_TS = 3  // task switched
	CR0_NE = 5  // numeric error
	CR0_WP = 16 // write protect in ring 0
	CR0_CD = 30 // cache disable
	CR0_PG = 31 // paging
)

// CR4 bits (SDM Vol. 3A section 2.5, Figure 2-7).
const (
	CR4_PAE        = 5  // physical address extension
	CR4_PGE        = 7  // global pages
	CR4_OSFXSR     = 9  // FXSAVE/FXRSTOR and SSE
	CR4_OSXMMEXCPT = 10 // unmasked SIMD exceptions
	CR4_VMXE       = 13 // VMX enable
	CR4_FSGSBASE   = 16 // RDFSBASE and friends
	CR4_OSXSAVE    = 18 // XSAVE and XCR0
)
