package vmm

import (
	"errors"
	"fmt"
)

// Model-specific registers a Linux guest touches (SDM Vol. 4 table 2-2).
const (
	IA32_TSC            = 0x10
	IA32_APIC_BASE      = 0x1B
	IA32_TSC_ADJUST     = 0x3B
	IA32_SPEC_CTRL      = 0x48
	IA32_PRED_CMD       = 0x49
	IA32_BIOS_SIGN_ID   = 0x8B
	IA32_MTRRCAP        = 0xFE
	IA32_MCG_CAP        = 0x179
	IA32_MCG_STATUS     = 0x17A
	IA32_MISC_ENABLE    = 0x1A0
	IA32_DEBUGCTL       = 0x1D9
	IA32_MTRR_PHYSBASE0 = 0x200
	IA32_MTRR_FIX64K    = 0x250
	IA32_MTRR_FIX16K_8  = 0x258
	IA32_MTRR_FIX16K_A  = 0x259
	IA32_MTRR_FIX4K_C0  = 0x268
	IA32_MTRR_FIX4K_F8  = 0x26F
	IA32_MTRR_DEF_TYPE  = 0x2FF
	IA32_TSC_DEADLINE   = 0x6E0
	IA32_XSS            = 0xDA0
	IA32_STAR           = 0xC0000081
	IA32_LSTAR          = 0xC0000082
	IA32_CSTAR          = 0xC0000083
	IA32_FMASK          = 0xC0000084
	IA32_KERNEL_GS_BASE = 0xC0000102
	IA32_TSC_AUX        = 0xC0000103
	MSR_PLATFORM_INFO   = 0xCE
)

// Guest MTRRs: 8 variable ranges, fixed ranges and write-combining
// (IA32_MTRRCAP: VCNT 7:0, FIX bit 8, WC bit 10; SDM Vol. 3A 12.11.1).
const (
	NumVarMTRR   = 8
	guestMTRRCap = NumVarMTRR | 1<<8 | 1<<10
	// IA32_MISC_ENABLE as the guest reads it on a host with fast
	// strings enabled (GuestMiscEnable): BTS and PEBS unavailable; no
	// MONITOR, no EIST.
	guestMiscEnable = MISC_ENABLE_FAST_STRING | MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL
	// The xAPIC's base, enabled (bit 11); BSP (bit 8) on vCPU 0.
	APICBaseDefault = 0xFEE0_0000
	apicBaseEnable  = 1 << 11
	apicBaseBSP     = 1 << 8
	apicBaseX2APIC  = 1 << 10
)

// IA32_MISC_ENABLE bits (SDM Vol. 4, table 2-2).
const (
	MISC_ENABLE_FAST_STRING  = 1 << 0
	MISC_ENABLE_BTS_UNAVAIL  = 1 << 11
	MISC_ENABLE_PEBS_UNAVAIL = 1 << 12
	MISC_ENABLE_XD_DISABLE   = 1 << 34
)

// GuestMiscEnable is the IA32_MISC_ENABLE a VT-x vCPU starts with on a
// host whose own IA32_MISC_ENABLE is host. The fast-strings bit is the
// host's: the MSR is not switched at VM entry, so the guest's REP MOVS
// and STOS run as the host's setting says, and the guest must not be
// told otherwise. Linux reads the bit to choose its memcpy, memset and
// clear_page (ERMS REP MOVSB/STOSB, REP MOVSQ, or unrolled loops);
// Bochs, for one, runs with fast strings off and counts each byte of a
// REP STOSB as an instruction, 8 times the ticks of the loop a guest
// told the truth picks.
func GuestMiscEnable(host uint64) uint64 {
	return guestMiscEnable&^MISC_ENABLE_FAST_STRING | host&MISC_ENABLE_FAST_STRING
}

// SwitchedMSRs are the guest MSRs the CPU loads at every VM entry and
// stores at every VM exit through the MSR areas (SDM Vol. 3C 25.7.2,
// 25.8.2): the guest reads and writes them without exits (SWAPGS changes
// KERNEL_GS_BASE behind any intercept anyway), and the host's values come
// back at exit because the boot layer's SYSCALL entry needs its LSTAR.
var SwitchedMSRs = []uint32{IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK, IA32_KERNEL_GS_BASE, IA32_TSC_AUX}

// MSRArea is a VM-entry MSR-load / VM-exit MSR-store area: 16-byte
// entries of index (bits 31:0), reserved (63:32) and value (SDM Vol. 3C
// 25.7.2 table 25-15), in one 4 KiB frame (at most 256 entries).
type MSRArea struct {
	Frame *[512]uint64
	N     int
}

// NewMSRArea lays out the area for msrs with the given values.
func NewMSRArea(frame *[512]uint64, msrs []uint32, values []uint64) *MSRArea {
	a := &MSRArea{Frame: frame, N: len(msrs)}
	for i, m := range msrs {
		frame[2*i] = uint64(m)
		frame[2*i+1] = values[i]
	}
	return a
}

// Get returns the value of msr and whether the area holds it.
func (a *MSRArea) Get(msr uint32) (uint64, bool) {
	for i := 0; i < a.N; i++ {
		if uint32(a.Frame[2*i]) == msr {
			return a.Frame[2*i+1], true
		}
	}
	return 0, false
}

// Set changes the value of msr if the area holds it.
func (a *MSRArea) Set(msr uint32, v uint64) bool {
	for i := 0; i < a.N; i++ {
		if uint32(a.Frame[2*i]) == msr {
			a.Frame[2*i+1] = v
			return true
		}
	}
	return false
}

// MSRBitmap sets up a 4 KiB MSR bitmap (SDM Vol. 3C 25.6.9): every
// access exits except reads of passRead and writes of passWrite. The
// bitmap has four 1 KiB parts: reads of 0-0x1FFF, reads of
// 0xC0000000-0xC0001FFF, then writes of the same two ranges.
func MSRBitmap(b *[4096]byte, passRead, passWrite []uint32) error {
	for i := range b {
		b[i] = 0xFF
	}
	clear := func(base int, msr uint32) error {
		var off uint32
		switch {
		case msr <= 0x1FFF:
			off = msr
		case msr >= 0xC000_0000 && msr <= 0xC000_1FFF:
			off = msr - 0xC000_0000 + 1024*8 // bit offset of the high part
		default:
			return fmt.Errorf("vmm: msr bitmap: %#x is outside both ranges", msr)
		}
		b[base+int(off/8)] &^= 1 << (off % 8)
		return nil
	}
	for _, m := range passRead {
		if err := clear(0, m); err != nil {
			return err
		}
	}
	for _, m := range passWrite {
		if err := clear(2048, m); err != nil {
			return err
		}
	}
	return nil
}

// MSRExits reports whether an access to msr exits under bitmap b (for
// tests and reports). MSRs outside both ranges always exit.
func MSRExits(b *[4096]byte, msr uint32, write bool) bool {
	base := 0
	if write {
		base = 2048
	}
	switch {
	case msr <= 0x1FFF:
	case msr >= 0xC000_0000 && msr <= 0xC000_1FFF:
		base += 1024
		msr -= 0xC000_0000
	default:
		return true
	}
	return b[base+int(msr/8)]&(1<<(msr%8)) != 0
}

// ErrMSRFault is wrapped when the guest's MSR access must fault: the
// handler injects #GP(0) as the CPU would for a missing MSR or a reserved
// bit (SDM Vol. 2B RDMSR/WRMSR).
var ErrMSRFault = errors.New("vmm: guest MSR access faults")

// TSCDeadliner is the LAPIC's TSC-deadline register.
type TSCDeadliner interface {
	TSCDeadline() uint64
	SetTSCDeadline(tsc uint64)
}

// APICMSRs is a local APIC's MSR interface.
type APICMSRs interface {
	ReadMSR(msr uint32) (uint64, error)
	WriteMSR(msr uint32, v uint64) error
}

func apicMSR(msr uint32) bool {
	return msr == IA32_APIC_BASE || msr == IA32_TSC_DEADLINE || msr >= 0x800 && msr <= 0x8FF
}

// GuestMSRs holds a vCPU's MSRs that live neither in the VMCS nor in the
// switched MSR area, and answers RDMSR/WRMSR exits.
type GuestMSRs struct {
	// VMCS holds EFER, PAT, DEBUGCTL and the SYSENTER MSRs (guest state).
	VMCS VMCS
	// Area holds SwitchedMSRs (nil in tests that need none).
	Area *MSRArea
	// BSP: this is vCPU 0.
	BSP bool
	// Deadline is the LAPIC's TSC-deadline timer; nil hides the MSR.
	Deadline TSCDeadliner
	// APIC, when set, answers IA32_APIC_BASE, IA32_TSC_DEADLINE and the
	// x2APIC range 0x800-0x8FF instead (the lapic device model); its
	// errors become #GP.
	APIC APICMSRs
	// TSC returns the guest's TSC; SetTSC moves it (TSC offsetting).
	TSC    func() uint64
	SetTSC func(uint64)

	APICBase   uint64
	MTRRDef    uint64
	MTRRFixed  [11]uint64
	MTRRVar    [2 * NumVarMTRR]uint64
	MiscEnable uint64
}

// NewGuestMSRs returns the reset state (SDM Vol. 3A 10.1.1 table 10-1).
func NewGuestMSRs(vmcs VMCS, area *MSRArea, bsp bool) *GuestMSRs {
	g := &GuestMSRs{VMCS: vmcs, Area: area, BSP: bsp, APICBase: APICBaseDefault | apicBaseEnable, MiscEnable: guestMiscEnable}
	if bsp {
		g.APICBase |= apicBaseBSP
	}
	return g
}

// fixedMTRRIndex maps a fixed-range MTRR to its slot.
func fixedMTRRIndex(msr uint32) (int, bool) {
	switch {
	case msr == IA32_MTRR_FIX64K:
		return 0, true
	case msr == IA32_MTRR_FIX16K_8:
		return 1, true
	case msr == IA32_MTRR_FIX16K_A:
		return 2, true
	case msr >= IA32_MTRR_FIX4K_C0 && msr <= IA32_MTRR_FIX4K_F8:
		return 3 + int(msr-IA32_MTRR_FIX4K_C0), true
	}
	return 0, false
}

// validMemType reports whether t is a memory type MTRRs and PAT accept:
// UC 0, WC 1, WT 4, WP 5, WB 6 (SDM Vol. 3A 12.11.2); PAT also UC- 7.
func validMemType(t uint64, pat bool) bool {
	return t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || (pat && t == 7)
}

func vmcsMSR(msr uint32) (Field, bool) {
	switch msr {
	case IA32_EFER:
		return GuestIA32EFER, true
	case IA32_PAT:
		return GuestIA32PAT, true
	case IA32_DEBUGCTL:
		return GuestIA32Debugctl, true
	case IA32_SYSENTER_CS:
		return GuestIA32SysenterCS, true
	case IA32_SYSENTER_ESP:
		return GuestIA32SysenterESP, true
	case IA32_SYSENTER_EIP:
		return GuestIA32SysenterEIP, true
	case IA32_FS_BASE:
		return GuestFSBase, true
	case IA32_GS_BASE:
		return GuestGSBase, true
	}
	return 0, false
}

// Read answers RDMSR msr.
func (g *GuestMSRs) Read(msr uint32) (uint64, error) {
	if g.APIC != nil && apicMSR(msr) {
		v, err := g.APIC.ReadMSR(msr)
		if err != nil {
			return 0, fmt.Errorf("%w: rdmsr %#x: %v", ErrMSRFault, msr, err)
		}
		return v, nil
	}
	if f, ok := vmcsMSR(msr); ok {
		return g.VMCS.Read(f)
	}
	if g.Area != nil {
		if v, ok := g.Area.Get(msr); ok {
			return v, nil
		}
	}
	if i, ok := fixedMTRRIndex(msr); ok {
		return g.MTRRFixed[i], nil
	}
	if msr >= IA32_MTRR_PHYSBASE0 && msr < IA32_MTRR_PHYSBASE0+2*NumVarMTRR {
		return g.MTRRVar[msr-IA32_MTRR_PHYSBASE0], nil
	}
	switch msr {
	case IA32_TSC:
		if g.TSC != nil {
			return g.TSC(), nil
		}
	case IA32_APIC_BASE:
		return g.APICBase, nil
	case IA32_FEATURE_CONTROL:
		return FeatureControlLock, nil // locked, VMX off: no nested VMX
	case IA32_BIOS_SIGN_ID:
		return 0, nil // no microcode revision to report
	case IA32_MTRRCAP:
		return guestMTRRCap, nil
	case IA32_MTRR_DEF_TYPE:
		return g.MTRRDef, nil
	case IA32_MCG_CAP, IA32_MCG_STATUS:
		return 0, nil // no banks (CPUID hides MCE/MCA)
	case IA32_MISC_ENABLE:
		return g.MiscEnable, nil
	case MSR_PLATFORM_INFO:
		return 0, nil
	case IA32_TSC_DEADLINE:
		if g.Deadline != nil {
			return g.Deadline.TSCDeadline(), nil
		}
	}
	return 0, fmt.Errorf("%w: rdmsr %#x", ErrMSRFault, msr)
}

// Write answers WRMSR msr, v.
func (g *GuestMSRs) Write(msr uint32, v uint64) error {
	fault := func(why string) error { return fmt.Errorf("%w: wrmsr %#x=%#x: %s", ErrMSRFault, msr, v, why) }
	canonical := func(a uint64) bool { return uint64(int64(a<<16)>>16) == a }
	if g.APIC != nil && apicMSR(msr) {
		if err := g.APIC.WriteMSR(msr, v); err != nil {
			return fault(err.Error())
		}
		return nil
	}
	switch msr {
	case IA32_EFER:
		// SCE, LME, NXE are writable; LMA is the CPU's (kept). The
		// IA-32e entry control follows LMA, which only changes with
		// CR0.PG (a 64-bit guest starts with it set).
		if v&^(EFER_SCE|EFER_LME|EFER_LMA|EFER_NXE) != 0 {
			return fault("reserved EFER bits")
		}
		old, err := g.VMCS.Read(GuestIA32EFER)
		if err != nil {
			return err
		}
		return g.VMCS.Write(GuestIA32EFER, v&^EFER_LMA|old&EFER_LMA)
	case IA32_PAT:
		for i := 0; i < 8; i++ {
			if !validMemType(v>>(8*i)&0xFF, true) {
				return fault("bad PAT memory type")
			}
		}
		return g.VMCS.Write(GuestIA32PAT, v)
	case IA32_DEBUGCTL:
		// No LBR or BTS for the guest; Linux writes 0.
		if v != 0 {
			return fault("debug features not virtualised")
		}
		return g.VMCS.Write(GuestIA32Debugctl, 0)
	case IA32_SYSENTER_CS:
		return g.VMCS.Write(GuestIA32SysenterCS, v&0xFFFF_FFFF)
	case IA32_SYSENTER_ESP, IA32_SYSENTER_EIP, IA32_FS_BASE, IA32_GS_BASE:
		if !canonical(v) {
			return fault("non-canonical address")
		}
		f, _ := vmcsMSR(msr)
		return g.VMCS.Write(f, v)
	case IA32_LSTAR, IA32_CSTAR, IA32_KERNEL_GS_BASE:
		if !canonical(v) {
			return fault("non-canonical address")
		}
	case IA32_TSC_AUX:
		if v>>32 != 0 {
			return fault("reserved TSC_AUX bits")
		}
	}
	if g.Area != nil && g.Area.Set(msr, v) {
		return nil
	}
	if i, ok := fixedMTRRIndex(msr); ok {
		for b := 0; b < 8; b++ {
			if !validMemType(v>>(8*b)&0xFF, false) {
				return fault("bad MTRR memory type")
			}
		}
		g.MTRRFixed[i] = v
		return nil
	}
	if msr >= IA32_MTRR_PHYSBASE0 && msr < IA32_MTRR_PHYSBASE0+2*NumVarMTRR {
		if (msr-IA32_MTRR_PHYSBASE0)%2 == 0 && !validMemType(v&0xFF, false) {
			return fault("bad MTRR memory type")
		}
		g.MTRRVar[msr-IA32_MTRR_PHYSBASE0] = v
		return nil
	}
	switch msr {
	case IA32_TSC:
		if g.SetTSC != nil {
			g.SetTSC(v)
			return nil
		}
	case IA32_APIC_BASE:
		// The base may not move and x2APIC mode does not exist here;
		// software disable (bit 11 clear) is accepted.
		if v&^(apicBaseEnable|apicBaseBSP|0xFFFF_F000) != 0 || v&0xF_FFFF_F000 != APICBaseDefault || v&apicBaseX2APIC != 0 {
			return fault("APIC base relocation or x2APIC")
		}
		g.APICBase = v&^apicBaseBSP | g.APICBase&apicBaseBSP
		return nil
	case IA32_BIOS_SIGN_ID:
		return nil // Linux writes 0 before reading the revision
	case IA32_MTRR_DEF_TYPE:
		if v&^0xCFF != 0 || !validMemType(v&0xFF, false) {
			return fault("bad default MTRR type")
		}
		g.MTRRDef = v
		return nil
	case IA32_MCG_STATUS:
		if v == 0 {
			return nil
		}
	case IA32_MISC_ENABLE:
		// Linux rewrites what it read, possibly toggling fast strings
		// or XD disable (bit 34): accept those, refuse the rest.
		if (v^g.MiscEnable)&^(MISC_ENABLE_FAST_STRING|MISC_ENABLE_XD_DISABLE) != 0 {
			return fault("unsupported MISC_ENABLE change")
		}
		g.MiscEnable = v &^ MISC_ENABLE_XD_DISABLE
		return nil
	case IA32_TSC_DEADLINE:
		if g.Deadline != nil {
			g.Deadline.SetTSCDeadline(v)
			return nil
		}
	}
	return fault("no such MSR")
}
