package vmm

import (
	"errors"
	"fmt"

	"github.com/doppel-ft/doppel/cpu"
)

// GuestConfig describes a guest for NewVCPU: the flat 32-bit start state of
// the package doc, under EPT.
type GuestConfig struct {
	EPTP    uint64 // from ept.Tables.EPTP
	PMLAddr uint64 // PML buffer frame; 0 disables PML
	Entry   uint32 // EIP
	Stack   uint32 // ESP
}

// Segment access rights, SDM Vol. 3C 25.4.1 table 25-2.
const (
	arCode32    = 0xC09B  // code, exec/read, accessed, S, P, D/B=1, G=1
	arData32    = 0xC093  // data, read/write, accessed, S, P, D/B=1, G=1
	arTSS32Busy = 0x008B  // 32-bit busy TSS, P
	arUnusable  = 0x10000 // bit 16
	guestCR0    = 0x31    // PE | ET | NE; paging off (unrestricted guest)
	guestRFLAGS = 0x2     // reserved bit 1
	guestPAT    = 0x0007_0406_0007_0406
	guestDR7    = 0x400
	selCode     = 0x08
	selData     = 0x10
)

// PreemptionSliceTSC is the longest a guest runs without a VM exit when
// the CPU has the VMX-preemption timer (SDM Vol. 3C 26.5.1): 2^23 TSC
// ticks, 84 ms at Bochs's 100 MHz TSC, about 3 ms at 3 GHz. External-
// interrupt exits normally come sooner; the timer is the backstop that
// hands the CPU back to the host even when they do not come (Bochs 2.7
// gives none to a guest with IF=0, see the package doc).
const PreemptionSliceTSC = 1 << 23

// PreemptionTimerValue is the VMX-preemption timer value for
// PreemptionSliceTSC when the timer counts down once every 2^rate TSC
// ticks (IA32_VMX_MISC bits 4:0, App. A.6). Without "save VMX-preemption
// timer value" every VM entry reloads it, so each entry gets a full slice.
func PreemptionTimerValue(rate uint) uint64 {
	return max(uint64(PreemptionSliceTSC)>>rate, 1)
}

// HWVCPU is one vCPU's VMCS on this CPU.
type HWVCPU struct {
	VMCS     HWVMCS
	vmcsPA   uint64
	launched bool
	// Controls as written, for messages.
	Pin, Proc, Proc2, ExitCtl, EntryCtl uint32
}

// NewVCPU allocates, clears and loads a VMCS and writes controls, host
// state and the guest's start state. PML is used when cfg.PMLAddr is set.
func (x *VMX) NewVCPU(frames Frames, cfg GuestConfig) (*HWVCPU, error) {
	pa, err := frames.AllocTable()
	if err != nil {
		return nil, fmt.Errorf("vmm: VMCS: %w", err)
	}
	frames.Table(pa)[0] = uint64(x.Features.Revision)
	if err := vmxError("vmclear", vmclear(pa)); err != nil {
		return nil, err
	}
	if err := vmxError("vmptrld", vmptrld(pa)); err != nil {
		return nil, err
	}
	h := &HWVCPU{vmcsPA: pa}
	if err := h.setControls(x.Caps, cfg); err != nil {
		return nil, err
	}
	if err := h.setHost(); err != nil {
		return nil, err
	}
	if err := h.setGuest(x.Caps, cfg); err != nil {
		return nil, err
	}
	return h, nil
}

type fieldValue struct {
	f Field
	v uint64
}

func (h *HWVCPU) writeAll(what string, fv []fieldValue) error {
	var errs []error
	for _, x := range fv {
		if err := h.VMCS.Write(x.f, x.v); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vmm: %s: %w", what, err)
	}
	return nil
}

// setControls adjusts every control word against its capability MSR
// (App. A): required controls must exist, wished ones are dropped if not.
func (h *HWVCPU) setControls(c Caps, cfg GuestConfig) error {
	var err error
	adj := func(g ControlGroup, want, need uint32, capMSR uint64) uint32 {
		if err != nil {
			return 0
		}
		var v uint32
		v, err = AdjustControls(g, want, need, capMSR)
		return v
	}
	// External interrupts exit so the host timer keeps slicing threads;
	// every I/O instruction exits (no I/O bitmaps); HLT exits.
	h.Pin = adj(PinBased, PinActivatePreemptionTimer, PinExternalInterruptExiting|PinNMIExiting, c.Pin)
	h.Proc = adj(ProcBased, 0, ProcHLTExiting|ProcUnconditionalIOExiting|ProcActivateSecondary, c.Proc)
	need2 := uint32(Proc2EnableEPT | Proc2UnrestrictedGuest)
	if cfg.PMLAddr != 0 {
		need2 |= Proc2EnablePML
	}
	h.Proc2 = adj(ProcBased2, 0, need2, c.Proc2)
	h.ExitCtl = adj(VMExit, ExitSaveIA32PAT|ExitLoadIA32PAT, ExitHostAddressSpaceSize|ExitSaveIA32EFER|ExitLoadIA32EFER, c.Exit)
	h.EntryCtl = adj(VMEntry, EntryLoadIA32PAT, EntryLoadIA32EFER, c.Entry)
	if err != nil {
		return err
	}
	fv := []fieldValue{
		{PinBasedControls, uint64(h.Pin)},
		{ProcBasedControls, uint64(h.Proc)},
		{SecondaryProcBasedControls, uint64(h.Proc2)},
		{VMExitControls, uint64(h.ExitCtl)},
		{VMEntryControls, uint64(h.EntryCtl)},
		{ExceptionBitmap, 0},
		{CR3TargetCount, 0},
		{VMExitMSRStoreCount, 0},
		{VMExitMSRLoadCount, 0},
		{VMEntryMSRLoadCount, 0},
		{VMEntryInterruptionInfo, 0},
		{CR0GuestHostMask, 0},
		{CR0ReadShadow, guestCR0},
		// CR4.VMXE must be 1 in VMX non-root (CR4_FIXED0); the guest
		// sees it as 0 through the read shadow.
		{CR4GuestHostMask, CR4_VMXE},
		{CR4ReadShadow, 0},
		{VMCSLinkPointer, ^uint64(0)},
		{EPTPointer, cfg.EPTP},
	}
	if cfg.PMLAddr != 0 {
		fv = append(fv, fieldValue{PMLAddress, cfg.PMLAddr}, fieldValue{PMLIndex, 511})
	}
	if h.Pin&PinActivatePreemptionTimer != 0 {
		fv = append(fv, fieldValue{VMXPreemptionTimerValue, PreemptionTimerValue(c.Features().PreemptionRate)})
	}
	return h.writeAll("controls", fv)
}

// setHost records the state the CPU loads at every VM exit (25.5, 28.5):
// this CPU's control registers, segments, descriptor tables and MSRs.
// HOST_RSP and HOST_RIP are written by vmentry before each entry.
func (h *HWVCPU) setHost() error {
	cs, ss, ds, es, fs, gs, tr := segments()
	var gdt, idt [10]byte
	sgdt(&gdt)
	sidt(&idt)
	gdtBase := le64(gdt[2:])
	idtBase := le64(idt[2:])
	trBase, err := tssBase(gdtBase, tr)
	if err != nil {
		return err
	}
	const rplTI = 7 // host selectors must have RPL 0 and TI 0 (27.2.3)
	return h.writeAll("host state", []fieldValue{
		{HostCR0, cpu.ReadCR0()},
		{HostCR3, cpu.ReadCR3()},
		{HostCR4, cpu.ReadCR4()},
		{HostCSSelector, uint64(cs &^ rplTI)},
		{HostSSSelector, uint64(ss &^ rplTI)},
		{HostDSSelector, uint64(ds &^ rplTI)},
		{HostESSelector, uint64(es &^ rplTI)},
		{HostFSSelector, uint64(fs &^ rplTI)},
		{HostGSSelector, uint64(gs &^ rplTI)},
		{HostTRSelector, uint64(tr &^ rplTI)},
		{HostFSBase, cpu.RDMSR(IA32_FS_BASE)},
		{HostGSBase, cpu.RDMSR(IA32_GS_BASE)},
		{HostTRBase, trBase},
		{HostGDTRBase, gdtBase},
		{HostIDTRBase, idtBase},
		{HostIA32SysenterCS, 0},
		{HostIA32SysenterESP, 0},
		{HostIA32SysenterEIP, 0},
		{HostIA32EFER, cpu.RDMSR(IA32_EFER)},
		{HostIA32PAT, cpu.RDMSR(IA32_PAT)},
	})
}

func le64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// tssBase reads the base of the TSS descriptor tr in the GDT at gdtBase: a
// 16-byte system descriptor (SDM Vol. 3A 8.2.3).
func tssBase(gdtBase uint64, tr uint16) (uint64, error) {
	if tr&^7 == 0 {
		return 0, fmt.Errorf("vmm: host has no task register loaded (TR=0)")
	}
	lo := peek64(uintptr(gdtBase + uint64(tr&^7)))
	hi := peek64(uintptr(gdtBase + uint64(tr&^7) + 8))
	return TSSBase(lo, hi), nil
}

// TSSBase assembles the base address of a 64-bit TSS descriptor from its
// two quadwords: bits 15:0 at 31:16, 23:16 at 39:32, 31:24 at 63:56, and
// 63:32 in the low half of the second quadword.
func TSSBase(lo, hi uint64) uint64 {
	return lo>>16&0xFFFF | (lo>>32&0xFF)<<16 | (lo>>56&0xFF)<<24 | (hi&0xFFFF_FFFF)<<32
}

// setGuest writes the test guest's start state: 32-bit protected mode,
// flat segments, paging off (25.4, checks of 27.3.1).
func (h *HWVCPU) setGuest(c Caps, cfg GuestConfig) error {
	fv := []fieldValue{
		{GuestCR0, (guestCR0 | c.CR0Fixed0&^0x8000_0001) & c.CR0Fixed1},
		{GuestCR3, 0},
		{GuestCR4, (CR4_VMXE | c.CR4Fixed0) & c.CR4Fixed1},
		{GuestDR7, guestDR7},
		{GuestRSP, uint64(cfg.Stack)},
		{GuestRIP, uint64(cfg.Entry)},
		{GuestRFLAGS, guestRFLAGS},
		{GuestIA32EFER, 0},
		{GuestIA32PAT, guestPAT},
		{GuestIA32Debugctl, 0},
		{GuestIA32SysenterCS, 0},
		{GuestIA32SysenterESP, 0},
		{GuestIA32SysenterEIP, 0},
		{GuestGDTRBase, 0}, {GuestGDTRLimit, 0},
		{GuestIDTRBase, 0}, {GuestIDTRLimit, 0},
		{GuestActivityState, 0},
		{GuestInterruptibilityState, 0},
		{GuestPendingDebugExceptions, 0},
		{GuestCSSelector, selCode}, {GuestCSBase, 0}, {GuestCSLimit, 0xFFFF_FFFF}, {GuestCSAccessRights, arCode32},
		{GuestTRSelector, 0}, {GuestTRBase, 0}, {GuestTRLimit, 0x67}, {GuestTRAccessRights, arTSS32Busy},
		{GuestLDTRSelector, 0}, {GuestLDTRBase, 0}, {GuestLDTRLimit, 0}, {GuestLDTRAccessRights, arUnusable},
	}
	for _, s := range []struct{ sel, base, limit, ar Field }{
		{GuestDSSelector, GuestDSBase, GuestDSLimit, GuestDSAccessRights},
		{GuestESSelector, GuestESBase, GuestESLimit, GuestESAccessRights},
		{GuestSSSelector, GuestSSBase, GuestSSLimit, GuestSSAccessRights},
		{GuestFSSelector, GuestFSBase, GuestFSLimit, GuestFSAccessRights},
		{GuestGSSelector, GuestGSBase, GuestGSLimit, GuestGSAccessRights},
	} {
		fv = append(fv, fieldValue{s.sel, selData}, fieldValue{s.base, 0}, fieldValue{s.limit, 0xFFFF_FFFF}, fieldValue{s.ar, arData32})
	}
	return h.writeAll("guest state", fv)
}
