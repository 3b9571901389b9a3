package vmm

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/loader"
)

// FXState holds the guest's and the host's FXSAVE images (SDM Vol. 1
// 10.5.1, 512 bytes each, 16-byte aligned) that AMD-V's entry stub
// switches (VT-x's switches an XSAVE area: xsave.go).
type FXState struct {
	Guest [512]byte
	Host  [512]byte
}

// NewFXState returns an aligned FXState with the guest's image in its
// reset state: FCW 0x037F, MXCSR 0x1F80 (SDM Vol. 3A 10.1.1 table 10-1).
func NewFXState() *FXState {
	b := make([]byte, unsafe.Sizeof(FXState{})+16)
	off := (16 - uintptr(unsafe.Pointer(&b[0]))%16) % 16
	fx := (*FXState)(unsafe.Pointer(&b[off]))
	fx.Guest[0], fx.Guest[1] = 0x7F, 0x03
	fx.Guest[24], fx.Guest[25] = 0x80, 0x1F
	return fx
}

// TSCClock is a guest's time: its TSC is the host's minus Base (TSC
// offsetting, SDM Vol. 3C 26.6.5) at Hz ticks per second, and its clock
// (devices.Clock) is that TSC in nanoseconds, so the LAPIC's TSC-deadline
// timer and the guest's own TSC agree.
type TSCClock struct {
	Hz   uint64
	Base uint64
	Read func() uint64 // the host TSC (cpu.RDTSC)
}

// GuestTSC returns the guest's TSC now.
func (c *TSCClock) GuestTSC() uint64 { return c.Read() - c.Base }

// Nanotime implements devices.Clock.
func (c *TSCClock) Nanotime() int64 {
	hi, lo := bits.Mul64(c.GuestTSC(), 1_000_000_000)
	if hi >= c.Hz {
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, c.Hz)
	return int64(q)
}

// Offset is the VMCS TSC offset (two's complement of Base).
func (c *TSCClock) Offset() uint64 { return -c.Base }

// MeasureTSCHz measures the host TSC rate against the boot layer's
// clock (itself calibrated against the PIT) over d.
func MeasureTSCHz(d time.Duration) uint64 {
	t0, c0 := time.Now(), cpu.RDTSC()
	time.Sleep(d)
	t1, c1 := time.Now(), cpu.RDTSC()
	ns := uint64(t1.Sub(t0).Nanoseconds())
	if ns == 0 {
		return 0
	}
	hi, lo := bits.Mul64(c1-c0, 1_000_000_000)
	q, _ := bits.Div64(hi%ns, lo, ns)
	return q
}

// SIPISource is the part of a LAPIC an application processor waits on
// before its first instruction (SDM Vol. 3A 9.4.4).
type SIPISource interface {
	TakeINIT() bool
	TakeSIPI() (vector uint8, ok bool)
}

// VMXCPUConfig describes one vCPU of a full guest.
type VMXCPUConfig struct {
	VMX    *VMX
	Frames Frames
	Index  int // also the APIC ID
	EPTP   uint64
	// PMLAddr is the PML buffer frame; 0 disables PML.
	PMLAddr uint64
	// VPID tags this vCPU's TLB entries (SDM Vol. 3C 29.1); 0: none.
	VPID uint16
	// Start is the boot vCPU's start state; nil makes an application
	// processor that waits for INIT and SIPI from its LAPIC.
	Start *loader.BootState
	Mem   GuestMemory
	Ports *IOBus
	MMIO  *MMIOBus
	// Devices serialises every device access of the machine (buses and
	// timers); LAPICs lock themselves.
	Devices sync.Locker
	Source  InterruptSource
	APIC    APICMSRs
	SIPI    SIPISource
	TPR     interface {
		TPR() uint8
		SetTPR(uint8)
	}
	Timers []devices.Timer
	Clock  *TSCClock
	View   *CPUIDView
	// Wake is signalled when an interrupt may have arrived for a halted
	// vCPU.
	Wake      <-chan struct{}
	OnPMLFull func() error
}

// VMXCPU is one vCPU of a full guest under VT-x: a CPU for a Machine.
type VMXCPU struct {
	HW  *HWVCPU
	V   *VCPU
	cfg VMXCPUConfig
	inj Injector
	fpu *fpuSwitch
	// xsave is the guest's XSAVE area (xsave.go), which fpu.guest
	// addresses: a standard-format area for the components the view
	// offers, or the legacy region and header when it offers none.
	xsave []byte
	msr   *GuestMSRs

	tid      int
	inGuest  atomic.Bool
	kicked   atomic.Bool
	kickCh   chan struct{}
	waitSIPI bool
	// nmiBlocked: the guest was blocked by NMI at the latest entry.
	nmiBlocked bool
	// haltedOff: the guest halted with interrupts disabled; the vCPU
	// parks (Step returns ActionPark) until an NMI or INIT. The VMCS
	// keeps the HLT activity state meanwhile, so a snapshot carries it.
	haltedOff bool
	// parkReported: ActionPark was returned since haltedOff was set
	// (a restored halted vCPU reports it at its first Step).
	parkReported bool
	// Halts counts HLT sleeps.
	Halts uint64
	// tGuest, tHalt and tStep sum host TSC ticks spent in the guest
	// (VM entry to exit), sleeping in HLT, and in Step altogether.
	tGuest, tHalt, tStep atomic.Uint64
	// lastRIP and lastReason are the guest RIP and basic reason of the
	// latest exit: a sample of where the guest runs.
	lastRIP, lastReason atomic.Uint64
	// debug is the guest's DR0-DR3 and DR6, which VM exits leave in the
	// CPU.
	debug GuestDebugRegs
}

// LastExit returns the basic reason and guest RIP of the vCPU's latest
// exit; it may be read from any goroutine while the vCPU runs (a sample
// of where the guest spends its time).
func (c *VMXCPU) LastExit() (ExitReasonBasic, uint64) {
	return ExitReasonBasic(c.lastReason.Load()), c.lastRIP.Load()
}

// VCPUTimes splits a vCPU thread's time, in host TSC ticks: in the guest,
// halted (sleeping until an interrupt is due), and the rest of Step (exit
// handling, and whatever the host ran on that CPU meanwhile).
type VCPUTimes struct {
	Guest, Halt, Step uint64
}

// Times returns the vCPU's time split so far; it may be read from any
// goroutine while the vCPU runs.
func (c *VMXCPU) Times() VCPUTimes {
	return VCPUTimes{Guest: c.tGuest.Load(), Halt: c.tHalt.Load(), Step: c.tStep.Load()}
}

// switchedMSRValues reads the host's values of SwitchedMSRs.
func switchedMSRValues() []uint64 {
	v := make([]uint64, len(SwitchedMSRs))
	for i, m := range SwitchedMSRs {
		v[i] = cpu.RDMSR(m)
	}
	return v
}

// NewVMXCPU builds the vCPU on the calling thread (which must stay pinned
// to its CPU): VMCS with the controls a Linux guest needs, MSR bitmap and
// areas, TSC offset, VPID, and the start state.
func NewVMXCPU(cfg VMXCPUConfig) (*VMXCPU, error) {
	x := cfg.VMX
	pa, err := cfg.Frames.AllocTable()
	if err != nil {
		return nil, fmt.Errorf("vmm: VMCS: %w", err)
	}
	cfg.Frames.Table(pa)[0] = uint64(x.Features.Revision)
	if err := vmxError("vmclear", vmclear(pa)); err != nil {
		return nil, err
	}
	if err := vmxError("vmptrld", vmptrld(pa)); err != nil {
		return nil, err
	}
	h := &HWVCPU{vmcsPA: pa}
	c := &VMXCPU{HW: h, cfg: cfg, kickCh: make(chan struct{}, 1), tid: syscall.Gettid(),
		debug: NewGuestDebugRegs()}
	c.initFPU()
	if err := c.setControls(); err != nil {
		return nil, err
	}
	if err := h.setHost(); err != nil {
		return nil, err
	}
	// The host's syscall MSRs come back at every exit (the boot layer's
	// SYSCALL entry needs LSTAR); the guest's are loaded at entry and
	// stored at exit in one area (SDM Vol. 3C 25.7.2, 25.8.2).
	guestPA, err1 := cfg.Frames.AllocTable()
	hostPA, err2 := cfg.Frames.AllocTable()
	bitmapPA, err3 := cfg.Frames.AllocTable()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("vmm: MSR areas: %w", err)
	}
	guestArea := NewMSRArea(cfg.Frames.Table(guestPA), SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
	NewMSRArea(cfg.Frames.Table(hostPA), SwitchedMSRs, switchedMSRValues())
	bitmap := (*[4096]byte)(unsafe.Pointer(cfg.Frames.Table(bitmapPA)))
	pass := append([]uint32{IA32_FS_BASE, IA32_GS_BASE, IA32_SYSENTER_CS, IA32_SYSENTER_ESP, IA32_SYSENTER_EIP}, SwitchedMSRs...)
	if err := MSRBitmap(bitmap, append(pass, IA32_TSC), pass); err != nil {
		return nil, err
	}
	n := uint64(len(SwitchedMSRs))
	fv := []fieldValue{
		{MSRBitmapAddress, bitmapPA},
		{VMEntryMSRLoadAddress, guestPA}, {VMEntryMSRLoadCount, n},
		{VMExitMSRStoreAddress, guestPA}, {VMExitMSRStoreCount, n},
		{VMExitMSRLoadAddress, hostPA}, {VMExitMSRLoadCount, n},
		{TSCOffset, cfg.Clock.Offset()},
	}
	if h.Proc2&Proc2EnableVPID != 0 {
		fv = append(fv, fieldValue{VirtualProcessorID, uint64(cfg.VPID)})
	}
	if err := h.writeAll("full-guest controls", fv); err != nil {
		return nil, err
	}
	c.msr = NewGuestMSRs(h.VMCS, guestArea, cfg.Start != nil)
	c.msr.MiscEnable = GuestMiscEnable(cpu.RDMSR(IA32_MISC_ENABLE))
	c.msr.APIC = cfg.APIC
	c.msr.TSC = cfg.Clock.GuestTSC
	c.msr.SetTSC = func(v uint64) {
		// Moving the guest's TSC moves the offset of this vCPU only.
		h.VMCS.Write(TSCOffset, v-cfg.Clock.Read())
	}
	cfg.Ports.Lock, cfg.MMIO.Lock = cfg.Devices, cfg.Devices
	c.V = &VCPU{
		VMCS:        h.VMCS,
		Bus:         cfg.Ports,
		CPUID:       cpu.CPUID,
		OnPMLFull:   cfg.OnPMLFull,
		MSRs:        c.msr,
		View:        cfg.View,
		APICID:      uint32(cfg.Index),
		XCR0:        XCR0_X87,
		XCR0Allowed: c.fpu.switchXCR0 | XCR0_X87,
		OnHalt:      c.halt,
		Mem:         cfg.Mem,
		MMIO:        cfg.MMIO,
		TPR:         cfg.TPR,
	}
	c.inj = Injector{Source: cfg.Source, Proc: h.Proc}
	if cfg.Start == nil {
		c.waitSIPI = true
		return c, h.writeAll("AP state", RealModeState(0, 0))
	}
	// The boot protocols pass their arguments in registers: the
	// multiboot magic and information in EAX and EBX, Linux's zero page
	// in RSI.
	c.V.Regs.RAX, c.V.Regs.RBX, c.V.Regs.RSI = cfg.Start.RAX, cfg.Start.RBX, cfg.Start.RSI
	return c, h.writeAll("guest start state", BootStateFields(cfg.Start))
}

// initFPU sets up the guest's x87/SSE/AVX state switch: XSAVE of the
// components the CPUID view offers (CPUIDConfig.XCR0), or FXSAVE of x87
// and SSE when it offers none (XSAVE and AVX are then hidden). The host's
// XCR0 is read here: the one the boot layer set with CR4.OSXSAVE.
func (c *VMXCPU) initFPU() {
	c.fpu = newFPUSwitch()
	var mask uint64
	if c.cfg.View != nil {
		mask = c.cfg.View.XCR0()
	}
	size := XSaveMinSize
	if mask != 0 {
		size = XSaveSize(cpu.CPUID, mask)
		c.fpu.hostXCR0 = xgetbv(0)
	}
	c.xsave = NewXSaveArea(size)
	c.fpu.guest = uintptr(unsafe.Pointer(&c.xsave[0]))
	c.fpu.switchXCR0 = mask
}

// XSaveSize returns the size of the vCPU's XSAVE area: what a saved
// state carries of its x87/SSE/AVX state.
func (c *VMXCPU) XSaveSize() int { return len(c.xsave) }

func (c *VMXCPU) setControls() error {
	h, caps := c.HW, c.cfg.VMX.Caps
	var err error
	adj := func(g ControlGroup, want, need uint32, capMSR uint64) uint32 {
		if err != nil {
			return 0
		}
		var v uint32
		v, err = AdjustControls(g, want, need, capMSR)
		return v
	}
	h.Pin = adj(PinBased, PinActivatePreemptionTimer, PinExternalInterruptExiting|PinNMIExiting, caps.Pin)
	// CR8 accesses exit: without a TPR shadow they would reach the host's
	// TPR. MWAIT and MONITOR exit (CPUID hides them; the guest gets #UD).
	h.Proc = adj(ProcBased, ProcRDPMCExiting,
		ProcHLTExiting|ProcUnconditionalIOExiting|ProcUseMSRBitmaps|ProcUseTSCOffsetting|
			ProcCR8LoadExiting|ProcCR8StoreExiting|ProcMWAITExiting|ProcMONITORExiting|ProcActivateSecondary, caps.Proc)
	want2 := uint32(Proc2EnableRDTSCP | Proc2EnableINVPCID)
	if c.cfg.VPID != 0 {
		want2 |= Proc2EnableVPID
	}
	need2 := uint32(Proc2EnableEPT | Proc2UnrestrictedGuest)
	if c.cfg.PMLAddr != 0 {
		need2 |= Proc2EnablePML
	}
	h.Proc2 = adj(ProcBased2, want2, need2, caps.Proc2)
	// The debug controls move the guest's DR7 and IA32_DEBUGCTL through
	// the VMCS. They are default-1 controls that the TRUE capability MSRs
	// let software clear, and cleared, a guest's DR7 would be lost at
	// every exit (SDM Vol. 3C 28.3.1: an exit sets DR7 to 400H).
	h.ExitCtl = adj(VMExit, ExitSaveIA32PAT|ExitLoadIA32PAT, ExitHostAddressSpaceSize|ExitSaveIA32EFER|ExitLoadIA32EFER|ExitSaveDebugControls, caps.Exit)
	var entry uint32
	if c.cfg.Start != nil && c.cfg.Start.Mode == loader.Long64 {
		entry = EntryIA32eModeGuest
	}
	h.EntryCtl = adj(VMEntry, EntryLoadIA32PAT, EntryLoadIA32EFER|EntryLoadDebugControls|entry, caps.Entry)
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
		{VMEntryInterruptionInfo, 0},
		{CR0GuestHostMask, 0},
		{CR4GuestHostMask, CR4_VMXE},
		{CR4ReadShadow, 0},
		{VMCSLinkPointer, ^uint64(0)},
		{EPTPointer, c.cfg.EPTP},
	}
	if c.cfg.PMLAddr != 0 {
		fv = append(fv, fieldValue{PMLAddress, c.cfg.PMLAddr}, fieldValue{PMLIndex, 511})
	}
	if h.Pin&PinActivatePreemptionTimer != 0 {
		fv = append(fv, fieldValue{VMXPreemptionTimerValue, PreemptionTimerValue(c.cfg.VMX.Features.PreemptionRate)})
	}
	return h.writeAll("controls", fv)
}

// Controls reports what the vCPU enabled, for the CPUID view.
func (c *VMXCPU) Controls() (rdtscp, invpcid, vpid bool) {
	p := c.HW.Proc2
	return p&Proc2EnableRDTSCP != 0, p&Proc2EnableINVPCID != 0, p&Proc2EnableVPID != 0
}

// Step implements CPU.
func (c *VMXCPU) Step() (Action, error) {
	t0 := c.cfg.Clock.Read()
	defer func() { c.tStep.Add(c.cfg.Clock.Read() - t0) }()
	if c.waitSIPI {
		return c.waitForSIPI()
	}
	if c.haltedOff {
		return c.parked()
	}
	// inGuest goes up before kicked is looked at, and Kick sets kicked
	// before it looks at inGuest: a Kick either stops this entry or sees
	// inGuest and sends its NMI. One that lands before VMRESUME is lost to
	// this entry; the Machine kicks again until the vCPU parks.
	c.inGuest.Store(true)
	if c.kicked.Swap(false) {
		c.inGuest.Store(false)
		return ActionResume, nil
	}
	c.pollTimers()
	if err := c.inj.PrepareEntry(c.HW.VMCS); err != nil {
		c.inGuest.Store(false)
		return ActionStop, err
	}
	st, err := c.HW.VMCS.Read(GuestInterruptibilityState)
	if err != nil {
		c.inGuest.Store(false)
		return ActionStop, err
	}
	c.nmiBlocked = st&BlockingByNMI != 0
	c.fpu.guestXCR0 = c.V.XCR0
	c.debug.BeforeEntry()
	tg := c.cfg.Clock.Read()
	res := vmentry(&c.V.Regs, c.HW.launched, c.fpu)
	c.tGuest.Add(c.cfg.Clock.Read() - tg)
	c.inGuest.Store(false)
	if res != 0 {
		h := c.HW
		return ActionStop, fmt.Errorf("%w: %v (controls pin %#x proc %#x proc2 %#x exit %#x entry %#x)",
			ErrEntryFailed, h.entryError(res), h.Pin, h.Proc, h.Proc2, h.ExitCtl, h.EntryCtl)
	}
	c.HW.launched = true
	e, err := c.HW.readExit()
	if err != nil {
		return ActionStop, err
	}
	c.lastRIP.Store(e.RIP)
	c.lastReason.Store(uint64(e.Reason.Basic()))
	if e.Reason.Basic() == ExitExceptionOrNMI {
		if err := c.hostNMIExit(); err != nil {
			return ActionStop, err
		}
	}
	if _, err := RequeueIDTVectoring(c.HW.VMCS); err != nil {
		return ActionStop, err
	}
	return Dispatch(c.V, &e)
}

// hostNMIExit undoes what a kick's NMI leaves behind. The host blocks
// NMIs until its next IRET after an NMI's exit (SDM Vol. 3C, "Architectural
// State Before a VM Exit"); every system call returns by IRETQ. Bochs 2.7
// also saves the guest as blocked by NMI after such an exit, and with NMI
// exiting that blocking lasts through the next VM entry, so every later
// kick's NMI waited for the preemption timer: the guest's own blocking as
// of the entry is put back.
func (c *VMXCPU) hostNMIExit() error {
	syscall.Gettid()
	st, err := c.HW.VMCS.Read(GuestInterruptibilityState)
	if err != nil || st&BlockingByNMI == 0 || c.nmiBlocked {
		return err
	}
	return c.HW.VMCS.Write(GuestInterruptibilityState, st&^BlockingByNMI)
}

// pollTimers brings the devices' timers up to the guest's now.
func (c *VMXCPU) pollTimers() (next int64, armed bool) {
	now := c.cfg.Clock.Nanotime()
	c.cfg.Devices.Lock()
	defer c.cfg.Devices.Unlock()
	for _, t := range c.cfg.Timers {
		t.Poll(now)
		if d, ok := t.NextDeadline(); ok && (!armed || d < next) {
			next, armed = d, true
		}
	}
	return next, armed
}

// Injected returns the number of interrupts injected.
func (c *VMXCPU) Injected() uint64 { return c.inj.Injected }

// ErrGuestHalted is returned by a vCPU loop that stops a guest whose vCPU
// halted with interrupts disabled (the SVM side; VMXCPU parks instead,
// and the Machine stops with ErrAllHalted when all are parked).
var ErrGuestHalted = errors.New("vmm: guest halted with interrupts disabled")

// Guest activity states (SDM Vol. 3C 25.4.2 table 25-3).
const (
	ActivityActive = 0
	ActivityHLT    = 1
)

// HaltSource is what a parked vCPU waits on: the NMI and INIT a LAPIC
// received (lapic.LAPIC).
type HaltSource interface {
	TakeNMI() bool
	TakeINIT() bool
	// WakePending reports a received NMI or INIT without taking it;
	// safe from any goroutine.
	WakePending() bool
}

// maxHaltSleep bounds one sleep of a halted vCPU: a missed wakeup costs
// at most this.
const maxHaltSleep = 50 * time.Millisecond

// halt sleeps until an interrupt is due, the vCPU is kicked or its
// timers' next deadline passes (then it polls and looks again).
func (c *VMXCPU) halt(*VCPU) (Action, error) {
	c.Halts++
	fl, err := c.HW.VMCS.Read(GuestRFLAGS)
	if err != nil {
		return ActionStop, err
	}
	if fl&RFLAGS_IF == 0 {
		// Only NMI, INIT (or SMI, which doppel has not) end this halt
		// (SDM Vol. 3A 9.1 table 9-1 and the HLT reference): Linux's
		// stop_this_cpu on the other CPUs while the boot CPU powers off.
		// The RIP is already past the HLT, where an NMI returns to.
		c.haltedOff, c.parkReported = true, true
		return ActionPark, c.HW.VMCS.Write(GuestActivityState, ActivityHLT)
	}
	for {
		if c.kicked.Swap(false) {
			return ActionResume, nil
		}
		next, armed := c.pollTimers()
		if c.cfg.Source != nil && c.cfg.Source.InterruptPending() {
			return ActionResume, nil
		}
		d := maxHaltSleep
		if armed {
			d = min(d, time.Duration(next-c.cfg.Clock.Nanotime()))
		}
		if d <= 0 {
			continue
		}
		t := time.NewTimer(d)
		th := c.cfg.Clock.Read()
		select {
		case <-c.cfg.Wake:
		case <-c.kickCh:
			c.kicked.Store(true)
		case <-t.C:
		}
		t.Stop()
		c.tHalt.Add(c.cfg.Clock.Read() - th)
	}
}

// parked waits, for a vCPU halted with interrupts disabled, until it is
// kicked (ActionPark again: the Machine may pause or stop) or an NMI or
// INIT arrives: an NMI is injected and the guest runs again; an INIT
// makes it wait for a SIPI like an application processor at power-up.
func (c *VMXCPU) parked() (Action, error) {
	if !c.parkReported {
		c.parkReported = true
		return ActionPark, nil
	}
	hs, _ := c.cfg.SIPI.(HaltSource)
	t := time.NewTimer(maxHaltSleep)
	defer t.Stop()
	for {
		if hs != nil {
			if hs.TakeINIT() {
				c.haltedOff, c.waitSIPI = false, true
				return ActionResume, c.HW.VMCS.Write(GuestActivityState, ActivityActive)
			}
			if hs.TakeNMI() {
				c.haltedOff = false
				return ActionResume, c.HW.writeAll("NMI wakes a halted vCPU", []fieldValue{
					{GuestActivityState, ActivityActive},
					{VMEntryInterruptionInfo, uint64(VectorNMI) | IntTypeNMI | IntInfoValid},
				})
			}
		}
		select {
		case <-c.cfg.Wake:
			continue
		case <-c.kickCh:
			c.kicked.Store(false)
		case <-t.C:
		}
		return ActionPark, nil
	}
}

// WakePending implements HaltWaker: an NMI, INIT or SIPI is on its way
// to this halted (or SIPI-waiting) vCPU.
func (c *VMXCPU) WakePending() bool {
	hs, ok := c.cfg.SIPI.(HaltSource)
	return ok && hs.WakePending()
}

// waitForSIPI parks an application processor until its LAPIC got INIT
// and then SIPI, and starts it in real mode at vector<<12 (SDM Vol. 3A
// 9.4.4.1 the MP initialisation protocol).
func (c *VMXCPU) waitForSIPI() (Action, error) {
	if c.cfg.SIPI == nil {
		return ActionStop, fmt.Errorf("vmm: vcpu %d: application processor without a LAPIC", c.cfg.Index)
	}
	c.cfg.SIPI.TakeINIT()
	if vec, ok := c.cfg.SIPI.TakeSIPI(); ok {
		c.waitSIPI = false
		return ActionResume, c.HW.writeAll("SIPI start", RealModeState(uint16(vec)<<8, 0))
	}
	t := time.NewTimer(maxHaltSleep)
	defer t.Stop()
	select {
	case <-c.cfg.Wake:
		return ActionResume, nil
	case <-c.kickCh:
	case <-t.C:
	}
	// Waiting for SIPI is parked too: a machine whose other vCPUs all
	// halted with interrupts off has nobody left to send one.
	return ActionPark, nil
}

// Kick implements CPU: a halted vCPU wakes, one about to enter does not
// (Step looks at kicked last), a running one gets an NMI (KickThread),
// which exits the guest whatever its RFLAGS.IF: Bochs gives no
// external-interrupt exit to a guest running with IF=0, so an IPI there
// waited for the preemption timer (84 ms at Bochs's TSC).
func (c *VMXCPU) Kick() {
	c.kicked.Store(true)
	select {
	case c.kickCh <- struct{}{}:
	default:
	}
	if c.inGuest.Load() {
		KickThread(c.tid) // an error (no such thread) leaves nothing to kick
	}
}

// Close implements CPU: VMCLEAR makes the VMCS inactive so its frame may
// be reused.
func (c *VMXCPU) Close() error { return vmxError("vmclear", vmclear(c.HW.vmcsPA)) }

// Save implements CPU. It runs on the vCPU's own pinned thread (Machine
// saves a parked vCPU there), whose CPU holds the guest's debug registers.
func (c *VMXCPU) Save() ([]byte, error) {
	d := c.debug.Current()
	return SaveVCPUState(c.HW.VMCS, &VCPUState{
		Regs: c.V.Regs, XSave: c.xsave, XCR0: c.V.XCR0, MSRArea: c.msr.Area,
		MSRs: c.msr, WaitSIPI: c.waitSIPI, GuestTSC: c.cfg.Clock.GuestTSC(), CR2: c.V.Regs.CR2,
		DR6: d.DR6, DR: d.DR,
	})
}

// restoredEntryControls returns the entry controls of a vCPU whose own
// are own after it restored a state that saved saved. They stay its own,
// fitted to its CPU: only "IA-32e mode guest", which is guest state,
// carries over. A blob from AMD-V holds that bit alone, one from an older
// doppel lacks the debug controls, and one from another CPU may hold
// bits this one does not allow.
func restoredEntryControls(own uint32, saved uint64) uint64 {
	return uint64(own&^EntryIA32eModeGuest) | saved&EntryIA32eModeGuest
}

// Restore implements CPU.
func (c *VMXCPU) Restore(b []byte) error {
	s := &VCPUState{MSRArea: c.msr.Area, MSRs: c.msr, XSaveSize: len(c.xsave), XCR0Allowed: c.V.XCR0Allowed}
	if err := RestoreVCPUState(c.HW.VMCS, b, s); err != nil {
		return err
	}
	saved, err := c.HW.VMCS.Read(VMEntryControls)
	if err != nil {
		return err
	}
	if err := c.HW.VMCS.Write(VMEntryControls, restoredEntryControls(c.HW.EntryCtl, saved)); err != nil {
		return err
	}
	c.V.Regs, c.V.XCR0, c.waitSIPI = s.Regs, s.XCR0, s.WaitSIPI
	c.V.Regs.CR2 = s.CR2
	dr6 := s.DR6
	if dr6 == 0 { // a state from before VT-x saved DR6 (version 3)
		dr6 = cpu.ResetDR6
	}
	c.debug.Restore(cpu.DebugRegs{DR: s.DR, DR6: dr6})
	// The saved area may be shorter (x87/SSE only): the rest stays
	// zero, which XSTATE_BV (checked) does not refer to.
	clear(c.xsave)
	copy(c.xsave, s.XSave)
	// A vCPU saved while halted with interrupts disabled stays parked.
	act, err := c.HW.VMCS.Read(GuestActivityState)
	if err != nil {
		return err
	}
	c.haltedOff, c.parkReported = act == ActivityHLT, false
	// The guest's TSC continues from the saved value.
	c.cfg.Clock.Base = c.cfg.Clock.Read() - s.GuestTSC
	return c.HW.VMCS.Write(TSCOffset, c.cfg.Clock.Offset())
}
