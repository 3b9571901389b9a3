package vmm

// The guest's CPUID (SDM Vol. 2A, CPUID; Vol. 3C 26.1.2: CPUID always
// exits). The guest sees the host's CPU with everything doppel cannot
// virtualise hidden, its own topology, a hypervisor leaf and the true
// rate of the TSC it reads.

// CPUID feature bits, SDM Vol. 2A table 3-10 (leaf 1 ECX), 3-11 (leaf 1
// EDX) and the leaf 7 / 0x80000001 / 0xD tables. The names are the
// manual's.
const (
	// Leaf 1 ECX.
	CPUID01_ECX_DTES64     = 2
	CPUID01_ECX_MONITOR    = 3
	CPUID01_ECX_DSCPL      = 4
	CPUID01_ECX_SMX        = 6
	CPUID01_ECX_EIST       = 7
	CPUID01_ECX_TM2        = 8
	CPUID01_ECX_SDBG       = 11
	CPUID01_ECX_PDCM       = 15
	CPUID01_ECX_DCA        = 18
	CPUID01_ECX_X2APIC     = 21
	CPUID01_ECX_TSCDeadine = 24
	CPUID01_ECX_XSAVE      = 26
	CPUID01_ECX_OSXSAVE    = 27
	CPUID01_ECX_AVX        = 28
	// Leaf 1 EDX.
	CPUID01_EDX_MCE  = 7
	CPUID01_EDX_MCA  = 14
	CPUID01_EDX_PSN  = 18
	CPUID01_EDX_DS   = 21
	CPUID01_EDX_ACPI = 22
	CPUID01_EDX_HTT  = 28
	CPUID01_EDX_TM   = 29
	CPUID01_EDX_PBE  = 31
	// Leaf 7 subleaf 0 EBX.
	CPUID07_EBX_TSCADJ  = 1 // IA32_TSC_ADJUST (MSR 0x3B), which GuestMSRs does not model
	CPUID07_EBX_SGX     = 2
	CPUID07_EBX_HLE     = 4
	CPUID07_EBX_INVPCID = 10
	CPUID07_EBX_RTM     = 11
	CPUID07_EBX_RDTM    = 12
	CPUID07_EBX_MPX     = 14
	CPUID07_EBX_RDTA    = 15
	CPUID07_EBX_PT      = 25
	// Leaf 7 subleaf 0 ECX.
	CPUID07_ECX_WAITPKG = 5
	CPUID07_ECX_PKU     = 3
	CPUID07_ECX_OSPKE   = 4
	CPUID07_ECX_LA57    = 16
	CPUID07_ECX_RDPID   = 22
	CPUID07_ECX_SGXLC   = 30
	CPUID07_ECX_PKS     = 31
	// Leaf 7 subleaf 0 EDX.
	CPUID07_EDX_HYBRID             = 15
	CPUID07_EDX_ARCHLBR            = 19
	CPUID07_EDX_IBT                = 20
	CPUID07_EDX_AMXBF16            = 22
	CPUID07_EDX_AMXTILE            = 24
	CPUID07_EDX_AMXINT8            = 25
	CPUID07_EDX_IBRS               = 26
	CPUID07_EDX_STIBP              = 27
	CPUID07_EDX_L1DFLUSH           = 28
	CPUID07_EDX_ARCHCAPS           = 29
	CPUID07_EDX_CORECAPS           = 30
	CPUID07_EDX_SSBD               = 31
	CPUID06_EAX_ARAT               = 2 // APIC timer always running
	CPUID0D1_EAX_XSAVEC            = 1
	CPUID0D1_EAX_XSAVES            = 3
	CPUID0D1_EAX_XFD               = 4
	CPUID80000001_ECX_SVM          = 2
	CPUID80000001_EDX_RDTSCP       = 27
	CPUID80000007_EDX_InvariantTSC = 8
)

// avx512EBX are the AVX-512 bits of leaf 7 EBX: F, DQ, IFMA, PF, ER, CD,
// BW, VL.
const avx512EBX = 1<<16 | 1<<17 | 1<<21 | 1<<26 | 1<<27 | 1<<28 | 1<<30 | 1<<31

// CR4_OSXSAVE enables XSAVE and XGETBV/XSETBV (SDM Vol. 3A 2.5).
const CR4_OSXSAVE = 1 << 18

// XCR0 state components (SDM Vol. 1 13.1).
const (
	XCR0_X87    = 1 << 0
	XCR0_SSE    = 1 << 1
	XCR0_AVX    = 1 << 2
	XCR0_OPMASK = 1 << 5
	XCR0_ZMMHi  = 1 << 6
	XCR0_HiZMM  = 1 << 7
	// XCR0Switchable are the user state components doppel saves and
	// restores for the guest: x87, SSE, AVX and AVX-512. MPX, PKRU, AMX
	// and the supervisor components are hidden.
	XCR0Switchable = XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_OPMASK | XCR0_ZMMHi | XCR0_HiZMM
)

// CPUIDConfig is what the guest's CPUID is built from.
type CPUIDConfig struct {
	// Host executes CPUID on the host CPU (cpu.CPUID on bare metal).
	Host func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
	// CPUs is the number of vCPUs; vCPU i has APIC ID i.
	CPUs int
	// TSCHz is the rate of the TSC the guest reads (the host's TSC rate
	// times the TSC multiplier, if any).
	TSCHz uint64
	// CrystalHz is the core crystal clock of leaf 0x15. Linux also takes
	// the LAPIC timer's rate from it, so it is the rate the LAPIC model's
	// timer counts at.
	CrystalHz uint64
	// The VM-execution controls that make these instructions work in the
	// guest; without them the feature is hidden (the guest would take
	// #UD, SDM Vol. 3C 25.6.2).
	RDTSCP, INVPCID, XSAVES bool
	// TSCDeadline: the LAPIC model implements the TSC-deadline timer mode.
	TSCDeadline bool
	// XCR0 is the set of XSAVE state components the vCPU switches
	// (XCR0Switchable & the host's); 0 hides XSAVE and AVX altogether.
	XCR0 uint64
	// XSAVEC offers the compacted-format XSAVEC (leaf 0xD.1 EAX bit 1).
	// Off, Linux saves its tasks' state with XSAVEOPT in the standard
	// format. doppel keeps it off: under Bochs's corei7_skylake_x with
	// XSAVEC shown, Linux's own XRSTOR of the compacted state it had
	// saved took #GP now and then ("Bad FPU state detected at
	// restore_fpregs_from_fpstate", YMM registers reset), a path doppel
	// does not touch; with XSAVEOPT the same checks pass (docs/design.md).
	XSAVEC bool
}

// CPUIDView is one guest CPU's view: the answer for any leaf and
// subleaf, given the guest's CR4 and XCR0 (OSXSAVE and the XSAVE sizes
// follow them).
type CPUIDView struct {
	cfg          CPUIDConfig
	maxBasic     uint32
	maxExt       uint32
	hostMaxBasic uint32
	hostMaxExt   uint32
	apicIDBits   uint32
}

// Hypervisor leaves: 0x40000000 names doppel and the highest leaf;
// 0x40000010 gives the TSC and LAPIC timer rates in kHz (the convention
// VMware and KVM share).
const (
	CPUIDLeafHypervisor = 0x4000_0000
	CPUIDLeafTiming     = 0x4000_0010
	guestMaxBasic       = 0x16
	guestMaxExt         = 0x8000_0008
)

// NewCPUIDView builds the view; cfg.Host is called as leaves are asked.
func NewCPUIDView(cfg CPUIDConfig) *CPUIDView {
	v := &CPUIDView{cfg: cfg}
	v.hostMaxBasic, _, _, _ = cfg.Host(0, 0)
	v.hostMaxExt, _, _, _ = cfg.Host(0x8000_0000, 0)
	v.maxBasic = guestMaxBasic
	v.maxExt = min(max(v.hostMaxExt, 0x8000_0001), guestMaxExt)
	for 1<<v.apicIDBits < cfg.CPUs {
		v.apicIDBits++
	}
	return v
}

func bit(n uint) uint32 { return 1 << n }

// Query answers CPUID(leaf, subleaf) for the vCPU with APIC ID apicID
// whose CR4 and XCR0 are given.
func (v *CPUIDView) Query(apicID uint32, cr4, xcr0 uint64, leaf, sub uint32) (a, b, c, d uint32) {
	host := func() (uint32, uint32, uint32, uint32) {
		if leaf < 0x8000_0000 && leaf > v.hostMaxBasic || leaf >= 0x8000_0000 && leaf > v.hostMaxExt {
			return 0, 0, 0, 0
		}
		return v.cfg.Host(leaf, sub)
	}
	n := uint32(v.cfg.CPUs)
	switch {
	case leaf == 0:
		a, b, c, d = host()
		a = v.maxBasic
	case leaf == 1:
		a, b, c, d = host()
		b = b&0xFFFF | (min(n, 255) << 16) | apicID<<24 // CLFLUSH size and brand kept
		c &^= bit(CPUID01_ECX_DTES64) | bit(CPUID01_ECX_MONITOR) | bit(CPUID01_ECX_DSCPL) |
			bit(CPUID01_ECX_VMX) | bit(CPUID01_ECX_SMX) | bit(CPUID01_ECX_EIST) | bit(CPUID01_ECX_TM2) |
			bit(CPUID01_ECX_SDBG) | bit(CPUID01_ECX_PDCM) | bit(CPUID01_ECX_DCA) | bit(CPUID01_ECX_X2APIC) |
			bit(CPUID01_ECX_OSXSAVE)
		c |= bit(CPUID01_ECX_Hypervisor)
		if !v.cfg.TSCDeadline {
			c &^= bit(CPUID01_ECX_TSCDeadine)
		}
		if v.cfg.XCR0 == 0 {
			c &^= bit(CPUID01_ECX_XSAVE) | bit(CPUID01_ECX_AVX)
		} else if cr4&CR4_OSXSAVE != 0 {
			c |= bit(CPUID01_ECX_OSXSAVE)
		}
		if v.cfg.XCR0&XCR0_AVX == 0 {
			c &^= bit(CPUID01_ECX_AVX) | 1<<12 | 1<<29 // FMA, F16C need AVX state
		}
		d &^= bit(CPUID01_EDX_MCE) | bit(CPUID01_EDX_MCA) | bit(CPUID01_EDX_PSN) | bit(CPUID01_EDX_DS) |
			bit(CPUID01_EDX_ACPI) | bit(CPUID01_EDX_TM) | bit(CPUID01_EDX_PBE) | bit(CPUID01_EDX_HTT)
		if n > 1 {
			d |= bit(CPUID01_EDX_HTT)
		}
	case leaf == 2:
		a, b, c, d = host()
	case leaf == 4:
		// Deterministic cache parameters: the host's caches, shared by
		// the guest's cores as one package of n cores with one thread
		// each.
		a, b, c, d = host()
		if a&0x1F != 0 {
			a = a&0x3FFF | (n-1)<<26
		}
	case leaf == 6:
		// Thermal and power management: none of the host's controls,
		// but ARAT, because doppel's virtual LAPIC timer runs whatever
		// the guest's idle state (Linux then needs no broadcast timer).
		a = bit(CPUID06_EAX_ARAT)
	case leaf == 7:
		if sub != 0 {
			break // subleaf 1 and up: nothing (EAX of subleaf 0 says so)
		}
		a, b, c, d = host()
		a = 0
		b &^= bit(CPUID07_EBX_TSCADJ) | bit(CPUID07_EBX_SGX) | bit(CPUID07_EBX_HLE) | bit(CPUID07_EBX_RTM) | bit(CPUID07_EBX_RDTM) |
			bit(CPUID07_EBX_MPX) | bit(CPUID07_EBX_RDTA) | bit(CPUID07_EBX_PT)
		if !v.cfg.INVPCID {
			b &^= bit(CPUID07_EBX_INVPCID)
		}
		if v.cfg.XCR0&XCR0_AVX == 0 {
			b &^= 1<<5 | avx512EBX // AVX2 and the AVX-512 family
		} else if v.cfg.XCR0&(XCR0_OPMASK|XCR0_ZMMHi|XCR0_HiZMM) != XCR0_OPMASK|XCR0_ZMMHi|XCR0_HiZMM {
			b &^= avx512EBX
			c &^= 1<<1 | 1<<6 | 1<<11 | 1<<12 | 1<<14 // VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ
			d &^= 1<<2 | 1<<3 | 1<<8 | 1<<23          // 4VNNIW, 4FMAPS, VP2INTERSECT, FP16
		}
		c &^= bit(CPUID07_ECX_WAITPKG) | bit(CPUID07_ECX_PKU) | bit(CPUID07_ECX_OSPKE) | bit(CPUID07_ECX_LA57) |
			bit(CPUID07_ECX_SGXLC) | bit(CPUID07_ECX_PKS)
		if !v.cfg.RDTSCP {
			c &^= bit(CPUID07_ECX_RDPID) // RDPID reads IA32_TSC_AUX like RDTSCP
		}
		d &^= bit(CPUID07_EDX_HYBRID) | bit(CPUID07_EDX_ARCHLBR) | bit(CPUID07_EDX_IBT) |
			bit(CPUID07_EDX_AMXBF16) | bit(CPUID07_EDX_AMXTILE) | bit(CPUID07_EDX_AMXINT8) |
			bit(CPUID07_EDX_IBRS) | bit(CPUID07_EDX_STIBP) | bit(CPUID07_EDX_L1DFLUSH) |
			bit(CPUID07_EDX_ARCHCAPS) | bit(CPUID07_EDX_CORECAPS) | bit(CPUID07_EDX_SSBD)
	case leaf == 0xB:
		// Extended topology (SDM Vol. 3A 10.9.2): an SMT level of one
		// thread per core, then a core level of n cores.
		d = apicID
		switch sub {
		case 0:
			a, b, c = 0, 1, 1<<8
		case 1:
			a, b, c = v.apicIDBits, n, 1|2<<8
		default:
			c = sub & 0xFF
		}
	case leaf == 0xD:
		a, b, c, d = v.xsaveLeaf(xcr0, sub)
	case leaf == 0x15:
		// TSC = crystal * EBX / EAX (SDM Vol. 2A, CPUID leaf 15H). Linux
		// computes crystal_khz * EBX / EAX in 32 bits, so the ratio is a
		// small integer: see CrystalFor.
		if v.cfg.CrystalHz != 0 && v.cfg.TSCHz != 0 {
			a, b, c = 1, uint32(max((v.cfg.TSCHz+v.cfg.CrystalHz/2)/v.cfg.CrystalHz, 1)), uint32(min(v.cfg.CrystalHz, 0xFFFF_FFFF))
		}
	case leaf == 0x16:
		a = uint32(v.cfg.TSCHz / 1_000_000)
		b = a
		c = uint32(v.cfg.CrystalHz / 1_000_000)
	case leaf == CPUIDLeafHypervisor:
		s := []byte(HypervisorSignature)
		a, b, c, d = CPUIDLeafTiming, le32(s[0:4]), le32(s[4:8]), le32(s[8:12])
	case leaf == CPUIDLeafTiming:
		a, b = uint32(v.cfg.TSCHz/1000), uint32(v.cfg.CrystalHz/1000)
	case leaf == 0x8000_0000:
		a, b, c, d = host()
		a = v.maxExt
	case leaf == 0x8000_0001:
		a, b, c, d = host()
		c &= 1<<0 | 1<<5 | 1<<8                    // LAHF/SAHF, LZCNT, PREFETCHW
		d &= 1<<11 | 1<<20 | 1<<26 | 1<<27 | 1<<29 // SYSCALL, NX, 1-GiB pages, RDTSCP, LM
		if !v.cfg.RDTSCP {
			d &^= bit(CPUID80000001_EDX_RDTSCP)
		}
	case leaf >= 0x8000_0002 && leaf <= 0x8000_0004, leaf == 0x8000_0006:
		if leaf <= v.maxExt {
			a, b, c, d = host()
		}
	case leaf == 0x8000_0007:
		// Only the invariant TSC: the guest's TSC runs at TSCHz always.
		d = bit(CPUID80000007_EDX_InvariantTSC)
	case leaf == 0x8000_0008:
		if leaf <= v.maxExt {
			a, _, _, _ = host()
			a &= 0xFFFF // physical and linear address sizes only
		}
	}
	return a, b, c, d
}

// xsaveLeaf answers leaf 0xD (SDM Vol. 1 13.2) for the switchable
// components only.
func (v *CPUIDView) xsaveLeaf(xcr0 uint64, sub uint32) (a, b, c, d uint32) {
	mask := v.cfg.XCR0
	if mask == 0 {
		return 0, 0, 0, 0
	}
	switch sub {
	case 0:
		a, d = uint32(mask), uint32(mask>>32)
		b = v.xsaveSize(xcr0 & mask)
		c = v.xsaveSize(mask)
	case 1:
		a, _, _, _ = v.cfg.Host(0xD, 1)
		a &^= bit(CPUID0D1_EAX_XFD)
		if !v.cfg.XSAVEC {
			a &^= bit(CPUID0D1_EAX_XSAVEC)
		}
		if !v.cfg.XSAVES {
			a &^= bit(CPUID0D1_EAX_XSAVES)
		}
		// EBX is the size XSAVEC (and XSAVES) write for XCR0|IA32_XSS:
		// the compacted format's (13.4.3), which Linux checks against its
		// own sum when it uses XSAVEC. IA32_XSS is 0 here (no supervisor
		// components).
		b = uint32(XSaveCompactedSize(v.cfg.Host, xcr0&mask))
	default:
		if sub < 64 && mask&(1<<sub) != 0 {
			a, b, c, d = v.cfg.Host(0xD, sub)
		}
	}
	return a, b, c, d
}

// xsaveSize is the standard-format XSAVE area size for the components in
// set: the legacy area and header (576 bytes) or the end of the highest
// component.
func (v *CPUIDView) xsaveSize(set uint64) uint32 {
	return uint32(XSaveSize(v.cfg.Host, set))
}

// XCR0 returns the XSAVE components the view offers (CPUIDConfig.XCR0):
// the ones the vCPU must switch.
func (v *CPUIDView) XCR0() uint64 { return v.cfg.XCR0 }

// CrystalFor picks the core crystal clock for a guest whose TSC runs at
// tscHz: tscHz/k for the smallest integer k that keeps it at or below
// maxHz (the LAPIC timer's limit), rounded down to whole kHz because
// Linux reads it in kHz. The guest then computes its TSC rate as
// crystal*k exactly as CPUID 0x15 states it (EAX=1, EBX=k), and the LAPIC
// timer, which Linux also clocks from the crystal, must run at the
// returned rate.
func CrystalFor(tscHz, maxHz uint64) uint64 {
	k := max((tscHz+maxHz-1)/maxHz, 1)
	return tscHz / k / 1000 * 1000
}
