package svm

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/loader"
	"golang.org/x/arch/x86/x86asm"
)

// PCConfig describes one vCPU of a full PC guest under AMD-V; the fields
// are VMXCPUConfig's that are not VT-x's.
type PCConfig struct {
	SVM     *SVM
	Index   int // also the APIC ID
	NCR3    uint64
	Start   *loader.BootState // nil: an AP waiting for INIT and SIPI
	Mem     vmm.GuestMemory
	Ports   *vmm.IOBus
	MMIO    *vmm.MMIOBus
	Devices sync.Locker
	Source  vmm.InterruptSource
	APIC    vmm.APICMSRs
	SIPI    vmm.SIPISource
	TPR     interface {
		TPR() uint8
		SetTPR(uint8)
	}
	Timers []devices.Timer
	Clock  *vmm.TSCClock
	View   *vmm.CPUIDView
	Wake   <-chan struct{}
}

// PCCPU is one vCPU of a full guest under AMD-V: a vmm.CPU for a Machine.
// Its exits are translated to vmm.Exit and handled by vmm.Dispatch
// through vmcsView, so the CPUID view, MSR file, MMIO and string-I/O
// emulation and interrupt injection are the VT-x vCPU's code.
type PCCPU struct {
	HW   *HWVCPU
	S    *VCPU // SVM side: VMCB, decoder, counts by exit code
	V    *vmm.VCPU
	cfg  PCConfig
	view *vmcsView
	inj  vmm.Injector
	fx   *vmm.FXState
	msr  *vmm.GuestMSRs

	tid      atomic.Int64 // the thread that runs the vCPU (AdoptThread)
	inGuest  atomic.Bool
	kicked   atomic.Bool
	kickCh   chan struct{}
	waitSIPI bool
	// haltedOff: the guest ran HLT with interrupts disabled; the vCPU
	// parks (Step returns ActionPark) until an NMI or INIT, as VT-x's
	// VMXCPU. parkReported: ActionPark was returned since.
	haltedOff, parkReported bool
	Halts                   uint64
	// slice ends a guest run at the next device-timer deadline: SVM has
	// no preemption timer (VT-x's bound on time in the guest), and a
	// guest spinning without exits would never see its timer tick.
	slice *time.Timer
	// Progress: exits so far and the last exit's code and RIP, readable
	// from other goroutines while the vCPU runs.
	progExits, progCode, progRIP atomic.Uint64
	// history holds the last exits (next is where the next one goes),
	// for the report of a guest that shut down.
	history [historyLen]exitRecord
	next    int
	// debug is the guest's DR0-DR3, which VMRUN and #VMEXIT leave in the
	// CPU (the VMCB has DR6 and DR7 only).
	debug vmm.GuestDebugRegs
}

// historyLen is how many exits a shutdown report lists.
const historyLen = 16

// exitRecord is one #VMEXIT as the shutdown report shows it: the event
// doppel injected at the entry before it (EVENTINJ), the exit code, RIP,
// EXITINFO1/2 and EXITINTINFO (an event whose delivery the exit
// interrupted, 15.7.2).
type exitRecord struct {
	injected             uint64
	code                 ExitCode
	rip, info1, info2    uint64
	intInfo, rsp, rflags uint64
}

func (r exitRecord) String() string {
	s := fmt.Sprintf("%v rip %#x rsp %#x rflags %#x info %#x/%#x", r.code, r.rip, r.rsp, r.rflags, r.info1, r.info2)
	if r.injected&EventInjValid != 0 {
		s = fmt.Sprintf("[inj %#x] ", r.injected) + s
	}
	if r.intInfo&EventInjValid != 0 {
		s += fmt.Sprintf(" exitintinfo %#x", r.intInfo)
	}
	return s
}

// shutdownReport describes the guest state at a shutdown #VMEXIT (a
// triple fault, APM Vol. 2 8.2.9) and the exits before it: which event
// doppel injected last, and what the guest ran.
func (c *PCCPU) shutdownReport() string {
	vm := c.HW.VMCB
	var b strings.Builder
	seg := func(name string, off int) {
		g := vm.Segment(off)
		fmt.Fprintf(&b, " %s %#x/%#x/%#x/%#x", name, g.Selector, g.Attrib, g.Base, g.Limit)
	}
	fmt.Fprintf(&b, "guest state: cpl %d cr0 %#x cr2 %#x cr3 %#x cr4 %#x efer %#x rsp %#x rflags %#x shadow %#x",
		vm.Get8(SaveCPL), vm.Get64(SaveCR0), vm.Get64(SaveCR2), vm.Get64(SaveCR3), vm.Get64(SaveCR4), vm.Get64(SaveEFER),
		vm.Get64(SaveRSP), vm.Get64(SaveRFLAGS), vm.Get64(InterruptShadow))
	seg("cs", SaveCS)
	seg("ss", SaveSS)
	seg("tr", SaveTR)
	seg("gdtr", SaveGDTR)
	seg("idtr", SaveIDTR)
	fmt.Fprintf(&b, "; last %d exits, oldest first:", historyLen)
	for i := range historyLen {
		r := c.history[(c.next+i)%historyLen]
		if r.code != 0 || r.rip != 0 {
			fmt.Fprintf(&b, " {%v}", r)
		}
	}
	return b.String()
}

// Progress returns the exits so far, the last exit code and its RIP.
func (c *PCCPU) Progress() (exits uint64, code ExitCode, rip uint64) {
	return c.progExits.Load(), ExitCode(c.progCode.Load()), c.progRIP.Load()
}

// maxSlice bounds one run in the guest when no device timer is armed
// sooner.
const maxSlice = 10 * time.Millisecond

var _ vmm.CPU = (*PCCPU)(nil)

// MSRs the guest reads and writes without exits: they live in the VMCB
// and move with VMLOAD/VMSAVE (15.5.2), so no intercept is needed (AMD
// APM Vol. 2 15.11 MSR permissions map).
var passMSRs = []uint32{vmm.IA32_FS_BASE, vmm.IA32_GS_BASE, vmm.IA32_KERNEL_GS_BASE,
	vmm.IA32_STAR, vmm.IA32_LSTAR, vmm.IA32_CSTAR, vmm.IA32_FMASK}

// msrpmBit returns the byte and bit of msr's read-intercept bit in the
// MSRPM (15.11, table 15-4: 0-1FFFh at byte 0, C000_0000h-C000_1FFFh at
// 800h, C001_0000h-C001_1FFFh at 1000h; two bits per MSR, read then
// write).
func msrpmBit(msr uint32) (int, uint, bool) {
	var base int
	switch {
	case msr < 0x2000:
		base = 0
	case msr >= 0xC000_0000 && msr < 0xC000_2000:
		base, msr = 0x800, msr-0xC000_0000
	case msr >= 0xC001_0000 && msr < 0xC001_2000:
		base, msr = 0x1000, msr-0xC001_0000
	default:
		return 0, 0, false
	}
	bit := 2 * msr
	return base + int(bit/8), uint(bit % 8), true
}

// NewPCCPU builds the vCPU on the calling (pinned) thread.
func NewPCCPU(cfg PCConfig) (*PCCPU, error) {
	s := cfg.SVM
	h, err := s.NewVCPU(GuestConfig{NCR3: cfg.NCR3, HostNXE: HostNXE(),
		Intercept: 0})
	if err != nil {
		return nil, err
	}
	vm := h.VMCB
	// MWAIT and MONITOR are hidden by CPUID: they give #UD.
	vm.SetBits32(InterceptMisc2, InterceptMONITOR|InterceptMWAIT)
	msrpm := vm.Get64(MSRPMBasePA)
	for _, m := range passMSRs {
		byt, bit, ok := msrpmBit(m)
		if !ok {
			return nil, fmt.Errorf("svm: MSR %#x outside the MSRPM", m)
		}
		t := s.frames.Table(msrpm + uint64(byt/4096*4096))
		q := &t[byt%4096/8]
		*q &^= 3 << (uint(byt%8)*8 + bit)
	}
	vm.Set64(TSCOffset, cfg.Clock.Offset())
	view := &vmcsView{v: vm}
	c := &PCCPU{HW: h, cfg: cfg, view: view, fx: vmm.NewFXState(), kickCh: make(chan struct{}, 1),
		debug: vmm.NewGuestDebugRegs()}
	c.tid.Store(int64(syscall.Gettid()))
	c.slice = time.AfterFunc(time.Hour, func() {
		if c.inGuest.Load() {
			syscall.Tgkill(syscall.Getpid(), int(c.tid.Load()), syscall.SIGURG) // an INTR #VMEXIT
		}
	})
	c.slice.Stop()
	c.S = &VCPU{VMCB: vm, Bus: cfg.Ports, Mem: cfg.Mem, NRIPS: s.Features.NRIPS}
	c.msr = vmm.NewGuestMSRs(view, nil, cfg.Start != nil)
	c.msr.APIC = cfg.APIC
	c.msr.TSC = cfg.Clock.GuestTSC
	c.msr.SetTSC = func(x uint64) { vm.Set64(TSCOffset, x-cfg.Clock.Read()) }
	cfg.Ports.Lock, cfg.MMIO.Lock = cfg.Devices, cfg.Devices
	c.V = &vmm.VCPU{
		VMCS: view, Bus: cfg.Ports, MSRs: c.msr, View: cfg.View, APICID: uint32(cfg.Index),
		XCR0: vmm.XCR0_X87, XCR0Allowed: vmm.XCR0_X87, OnHalt: c.halt,
		Mem: cfg.Mem, MMIO: cfg.MMIO, TPR: cfg.TPR,
	}
	c.inj = vmm.Injector{Source: cfg.Source}
	if cfg.Start == nil {
		c.waitSIPI = true
		SetRealMode(vm, 0)
		return c, nil
	}
	c.V.Regs.RAX, c.V.Regs.RBX, c.V.Regs.RSI = cfg.Start.RAX, cfg.Start.RBX, cfg.Start.RSI
	SetBootState(vm, cfg.Start)
	return c, nil
}

// SetBootState writes the loader's start state (32-bit protected mode or
// 64-bit long mode) into the state save area (App. B table B-2).
func SetBootState(v VMCB, b *loader.BootState) {
	for _, s := range []struct {
		seg loader.Segment
		off int
	}{{b.CS, SaveCS}, {b.DS, SaveDS}, {b.ES, SaveES}, {b.SS, SaveSS}, {b.FS, SaveFS}, {b.GS, SaveGS}, {b.TR, SaveTR}, {b.LDTR, SaveLDTR}} {
		v.SetSegment(s.off, Segment{Selector: s.seg.Selector, Attrib: arToAttrib(uint64(s.seg.Access)), Limit: s.seg.Limit, Base: s.seg.Base})
	}
	v.SetSegment(SaveGDTR, Segment{Limit: uint32(b.GDTLimit), Base: b.GDTBase})
	v.SetSegment(SaveIDTR, Segment{Limit: uint32(b.IDTLimit), Base: b.IDTBase})
	v.Set8(SaveCPL, 0)
	v.Set64(SaveCR0, b.CR0|CR0_ET|CR0_NE)
	v.Set64(SaveCR3, b.CR3)
	v.Set64(SaveCR4, b.CR4)
	v.Set64(SaveEFER, b.EFER|EFER_SVME)
	v.Set64(SaveRIP, b.RIP)
	v.Set64(SaveRSP, b.RSP)
	v.Set64(SaveRFLAGS, b.RFLAGS|2)
}

// SetRealMode is the state after SIPI with vector vec (real mode at
// vec<<8:0, APM Vol. 2 14.1.5 and 16.5 for the SIPI start).
func SetRealMode(v VMCB, vec uint8) {
	sel := uint16(vec) << 8
	v.SetSegment(SaveCS, Segment{Selector: sel, Attrib: 0x9B, Limit: 0xFFFF, Base: uint64(sel) << 4})
	for _, off := range []int{SaveDS, SaveES, SaveSS, SaveFS, SaveGS} {
		v.SetSegment(off, Segment{Attrib: 0x93, Limit: 0xFFFF})
	}
	v.SetSegment(SaveGDTR, Segment{Limit: 0xFFFF})
	v.SetSegment(SaveIDTR, Segment{Limit: 0xFFFF})
	v.SetSegment(SaveLDTR, Segment{Attrib: 0x82, Limit: 0xFFFF})
	v.SetSegment(SaveTR, Segment{Attrib: 0x8B, Limit: 0xFFFF})
	v.Set8(SaveCPL, 0)
	v.Set64(SaveCR0, CR0_ET|CR0_NE)
	v.Set64(SaveCR3, 0)
	v.Set64(SaveCR4, 0)
	v.Set64(SaveEFER, EFER_SVME)
	v.Set64(SaveRIP, 0)
	v.Set64(SaveRSP, 0)
	v.Set64(SaveRFLAGS, 2)
}

// Step implements vmm.CPU.
func (c *PCCPU) Step() (vmm.Action, error) {
	if c.waitSIPI {
		return c.waitForSIPI()
	}
	if c.haltedOff {
		return c.parked()
	}
	next, armed := c.pollTimers()
	d := maxSlice
	if armed {
		d = max(min(d, time.Duration(next-c.cfg.Clock.Nanotime())), 50*time.Microsecond)
	}
	c.slice.Reset(d)
	defer c.slice.Stop()
	// inGuest goes up before kicked is looked at, and Kick sets kicked
	// before it looks at inGuest: a Kick either stops this entry or sees
	// inGuest and sends its NMI, which waits with GIF=0 and exits the
	// guest at once. (Clearing kicked here lost every Kick that came
	// between the Machine's gate and this point.)
	c.inGuest.Store(true)
	if c.kicked.Swap(false) {
		c.inGuest.Store(false)
		return vmm.ActionResume, nil
	}
	if err := c.inj.PrepareEntry(c.view); err != nil {
		c.inGuest.Store(false)
		return vmm.ActionStop, err
	}
	c.S.Regs = c.V.Regs
	injected := c.HW.VMCB.Get64(EventInj)
	c.debug.BeforeEntry() // DR6 goes too, harmlessly: VMRUN loads the VMCB's
	e := c.HW.enterFX(c.S, c.fx)
	c.V.Regs = c.S.Regs
	c.inGuest.Store(false)
	vm := c.HW.VMCB
	// An event whose delivery the exit interrupted goes again (15.7.2);
	// otherwise EVENTINJ was delivered.
	if e.IntInfo&EventInjValid != 0 {
		vm.Set64(EventInj, e.IntInfo)
	} else {
		vm.Set64(EventInj, 0)
	}
	if c.S.Counts == nil {
		c.S.Counts = make(map[ExitCode]uint64)
	}
	c.S.Counts[e.Code]++
	c.progExits.Add(1)
	c.progCode.Store(uint64(e.Code))
	c.progRIP.Store(e.RIP)
	c.history[c.next] = exitRecord{injected: injected, code: e.Code, rip: e.RIP, info1: e.Info1, info2: e.Info2,
		intInfo: e.IntInfo, rsp: vm.Get64(SaveRSP), rflags: vm.Get64(SaveRFLAGS)}
	c.next = (c.next + 1) % historyLen
	return c.dispatch(&e)
}

// dispatch turns the #VMEXIT into vmm's exit and runs vmm's handler.
func (c *PCCPU) dispatch(e *Exit) (vmm.Action, error) {
	x := vmm.Exit{RIP: e.RIP}
	length := func(want string) error {
		next, err := c.S.nextRIP(e, want)
		c.view.instrLen = next - e.RIP
		return err
	}
	var err error
	switch e.Code {
	case ExitIntr, ExitNMI, ExitSMI, ExitInit:
		x.Reason = vmm.ExitReasonField(vmm.ExitExternalInterrupt)
	case ExitVIntr:
		// The window is open: PrepareEntry injects; V_IRQ goes with it.
		x.Reason = vmm.ExitReasonField(vmm.ExitInterruptWindow)
	case ExitCPUID:
		x.Reason = vmm.ExitReasonField(vmm.ExitCPUID)
		err = length("CPUID")
	case ExitHLT:
		x.Reason = vmm.ExitReasonField(vmm.ExitHLT)
		err = length("HLT")
	case ExitMSR:
		if e.Info1 == 1 {
			x.Reason = vmm.ExitReasonField(vmm.ExitWRMSR)
			err = length("WRMSR")
		} else {
			x.Reason = vmm.ExitReasonField(vmm.ExitRDMSR)
			err = length("RDMSR")
		}
	case ExitXSETBV:
		x.Reason = vmm.ExitReasonField(vmm.ExitXSETBV)
		err = length("XSETBV")
	case ExitIOIO:
		x.Reason = vmm.ExitReasonField(vmm.ExitIOInstruction)
		x.Qualification, err = c.ioQual(e)
		c.view.instrLen = e.Info2 - e.RIP // EXITINFO2 is the next RIP (15.10.2)
	case ExitNPF:
		x.Reason = vmm.ExitReasonField(vmm.ExitEPTViolation)
		x.GuestPhysical = e.Info2
	case ExitShutdown:
		// vmm's handler makes the TripleFaultError; this says why.
		act, err := vmm.Dispatch(c.V, &vmm.Exit{RIP: e.RIP, Reason: vmm.ExitReasonField(vmm.ExitTripleFault)})
		if err != nil {
			err = fmt.Errorf("%w; %s", err, c.shutdownReport())
		}
		return act, err
	case ExitMONITOR, ExitMWAIT:
		x.Reason = vmm.ExitReasonField(vmm.ExitMWAIT)
	case ExitVMRUN, ExitVMMCALL, ExitVMLOAD, ExitVMSAVE, ExitSTGI, ExitCLGI, ExitSKINIT:
		// SVM is hidden from the guest (CPUID): #UD, as without it.
		return vmm.ActionResume, vmm.InjectException(c.view, vmm.VectorUD, false, 0)
	case ExitInvalid:
		return handleInvalid(c.S, e)
	default:
		return vmm.ActionStop, fmt.Errorf("%w: SVM %v (exitcode %#x, exitinfo1 %#x, exitinfo2 %#x, rip %#x)",
			vmm.ErrUnhandledExit, e.Code, uint64(e.Code), e.Info1, e.Info2, e.RIP)
	}
	if err != nil {
		return vmm.ActionStop, fmt.Errorf("svm: vcpu %d: %v exit: %w", c.cfg.Index, e.Code, err)
	}
	x.InstrLen = c.view.instrLen
	return vmm.Dispatch(c.V, &x)
}

// ioQual converts IOIO's EXITINFO1 (15.10.2 figure 15-2) to VT-x's I/O
// exit qualification and, for INS/OUTS, the instruction information (the
// address size from A16/A32/A64, the segment of OUTS from the decoded
// prefix, DS by default).
func (c *PCCPU) ioQual(e *Exit) (uint64, error) {
	q := IOIOInfo(e.Info1)
	size := q.Size()
	if size == 0 {
		return 0, fmt.Errorf("%w: %v at rip %#x", vmm.ErrUnsupported, q, e.RIP)
	}
	vq := uint64(size-1) | uint64(q.Port())<<vmm.IOQualPortShift
	if q.In() {
		vq |= vmm.IOQualIn
	}
	if !q.StringOp() {
		return vq, nil
	}
	vq |= vmm.IOQualString
	if q&IOIORep != 0 {
		vq |= vmm.IOQualREP
	}
	var asz uint64
	switch {
	case q&IOIOA32 != 0:
		asz = 1
	case q&IOIOA64 != 0:
		asz = 2
	}
	seg := uint64(3) // DS
	if !q.In() {
		inst, err := c.S.DecodeAt(e.RIP)
		if err != nil {
			return 0, err
		}
		c.S.Decoded++
		for _, p := range inst.Prefix {
			switch p &^ (x86asm.PrefixImplicit | x86asm.PrefixIgnored | x86asm.PrefixInvalid) {
			case x86asm.PrefixES:
				seg = 0
			case x86asm.PrefixCS:
				seg = 1
			case x86asm.PrefixSS:
				seg = 2
			case x86asm.PrefixDS:
				seg = 3
			case x86asm.PrefixFS:
				seg = 4
			case x86asm.PrefixGS:
				seg = 5
			}
		}
	}
	c.view.instrInfo = asz<<7 | seg<<15
	return vq, nil
}

// pollTimers brings the devices' timers up to the guest's now.
func (c *PCCPU) pollTimers() (next int64, armed bool) {
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

// maxHaltSleep bounds one sleep of a halted vCPU, as VMXCPU's.
const maxHaltSleep = 50 * time.Millisecond

// halt sleeps until an interrupt is due, the vCPU is kicked or its
// timers' next deadline passes.
func (c *PCCPU) halt(*vmm.VCPU) (vmm.Action, error) {
	c.Halts++
	if c.HW.VMCB.Get64(SaveRFLAGS)&vmm.RFLAGS_IF == 0 {
		// Only NMI or INIT end this halt (AMD APM Vol. 3, HLT): Linux's
		// stop_this_cpu on the other CPUs while the boot CPU powers off
		// or panics. The Machine stops once every vCPU is parked. The RIP
		// is already past the HLT, where an NMI returns to.
		c.haltedOff, c.parkReported = true, true
		return vmm.ActionPark, nil
	}
	for {
		if c.kicked.Swap(false) {
			return vmm.ActionResume, nil
		}
		next, armed := c.pollTimers()
		if c.cfg.Source != nil && c.cfg.Source.InterruptPending() {
			return vmm.ActionResume, nil
		}
		d := maxHaltSleep
		if armed {
			d = min(d, time.Duration(next-c.cfg.Clock.Nanotime()))
		}
		if d <= 0 {
			continue
		}
		t := time.NewTimer(d)
		select {
		case <-c.cfg.Wake:
		case <-c.kickCh:
			c.kicked.Store(true)
		case <-t.C:
		}
		t.Stop()
	}
}

// parked waits, for a vCPU halted with interrupts disabled, until it is
// kicked (ActionPark again: the Machine may pause or stop) or an NMI or
// INIT arrives: an NMI is injected (EVENTINJ type NMI, 15.20) and the
// guest runs again; an INIT makes it wait for a SIPI like an application
// processor at power-up.
func (c *PCCPU) parked() (vmm.Action, error) {
	if !c.parkReported {
		c.parkReported = true
		return vmm.ActionPark, nil
	}
	hs, _ := c.cfg.SIPI.(vmm.HaltSource)
	t := time.NewTimer(maxHaltSleep)
	defer t.Stop()
	for {
		if hs != nil {
			if hs.TakeINIT() {
				c.haltedOff, c.waitSIPI = false, true
				return vmm.ActionResume, nil
			}
			if hs.TakeNMI() {
				c.haltedOff = false
				c.HW.VMCB.Set64(EventInj, uint64(vmm.VectorNMI)|vmm.IntTypeNMI|EventInjValid)
				return vmm.ActionResume, nil
			}
		}
		select {
		case <-c.cfg.Wake:
			continue
		case <-c.kickCh:
			c.kicked.Store(false)
		case <-t.C:
		}
		return vmm.ActionPark, nil
	}
}

// WakePending implements vmm.HaltWaker: an NMI, INIT or SIPI is on its
// way to this halted (or SIPI-waiting) vCPU.
func (c *PCCPU) WakePending() bool {
	hs, ok := c.cfg.SIPI.(vmm.HaltSource)
	return ok && hs.WakePending()
}

// waitForSIPI parks an application processor until INIT and SIPI.
func (c *PCCPU) waitForSIPI() (vmm.Action, error) {
	if c.cfg.SIPI == nil {
		return vmm.ActionStop, fmt.Errorf("svm: vcpu %d: application processor without a LAPIC", c.cfg.Index)
	}
	c.cfg.SIPI.TakeINIT()
	if vec, ok := c.cfg.SIPI.TakeSIPI(); ok {
		c.waitSIPI = false
		SetRealMode(c.HW.VMCB, vec)
		return vmm.ActionResume, nil
	}
	t := time.NewTimer(maxHaltSleep)
	defer t.Stop()
	select {
	case <-c.cfg.Wake:
		return vmm.ActionResume, nil
	case <-c.kickCh:
	case <-t.C:
	}
	// Waiting for SIPI is parked too, as under VT-x: a machine whose
	// other vCPUs all halted with interrupts off has nobody left to send
	// one.
	return vmm.ActionPark, nil
}

// Kick implements vmm.CPU: a halted vCPU wakes, one about to enter does
// not (Step looks at kicked last), a running one gets an NMI
// (vmm.KickThread): the NMI intercept exits the guest, the NMI waits with
// GIF=0 and the host's stub only returns from it. A reschedule IPI (the
// slice's SIGURG) would also exit, but its handler yields the CPU to any
// other runnable thread first, so the vCPU reached its gate only after
// their time slices.
func (c *PCCPU) Kick() {
	c.kicked.Store(true)
	select {
	case c.kickCh <- struct{}{}:
	default:
	}
	if c.inGuest.Load() {
		vmm.KickThread(int(c.tid.Load())) // an error (no such thread) leaves nothing to kick
	}
}

// Close implements vmm.CPU.
func (c *PCCPU) Close() error { return nil }

// AdoptThread makes the calling thread the one the vCPU's kicks and
// time-slice signals go to. NewPCCPU records the thread that built the
// vCPU; one built ahead on another thread of the same CPU (a secondary's
// prebuilt vCPU) must be adopted by the thread that runs it, before its
// first Step, or every kick would reach the wrong thread.
func (c *PCCPU) AdoptThread() { c.tid.Store(int64(syscall.Gettid())) }

// vmcbMSRs are vmm.SwitchedMSRs' homes in the VMCB (VMLOAD/VMSAVE state,
// App. B table B-2). IA32_TSC_AUX has none (RDTSCP is hidden from the
// guest): it saves as 0.
var vmcbMSRs = map[uint32]int{
	vmm.IA32_STAR: SaveSTAR, vmm.IA32_LSTAR: SaveLSTAR, vmm.IA32_CSTAR: SaveCSTAR,
	vmm.IA32_FMASK: SaveSFMASK, vmm.IA32_KERNEL_GS_BASE: SaveKernelGSBase,
}

// Save implements vmm.CPU with VT-x's encoding (vmm.SaveVCPUState, magic
// "VCPU"): the VMCB read through vmcsView as VMCS fields, the general
// registers, the x87/SSE image, XCR0, the syscall MSRs, the MSR file,
// whether the vCPU waits for SIPI, and its TSC. A blob saved here restores
// under VT-x's VMXCPU and back, as far as the vendors' CPUs agree (the
// package doc's "Saved state across vendors").
func (c *PCCPU) Save() ([]byte, error) {
	vm := c.HW.VMCB
	vals := make([]uint64, len(vmm.SwitchedMSRs))
	for i, m := range vmm.SwitchedMSRs {
		if off, ok := vmcbMSRs[m]; ok {
			vals[i] = vm.Get64(off)
		}
	}
	var frame [512]uint64
	// A vCPU halted with interrupts off saves as VT-x's does: activity
	// state HLT (the field has no VMCB home; the view keeps it).
	act := uint64(vmm.ActivityActive)
	if c.haltedOff {
		act = vmm.ActivityHLT
	}
	if err := c.view.Write(vmm.GuestActivityState, act); err != nil {
		return nil, err
	}
	return vmm.SaveVCPUState(c.view, &vmm.VCPUState{
		Regs: c.V.Regs, XSave: vmm.FXArea(&c.fx.Guest), XCR0: c.V.XCR0,
		MSRArea: vmm.NewMSRArea(&frame, vmm.SwitchedMSRs, vals), MSRs: c.msr,
		WaitSIPI: c.waitSIPI, GuestTSC: c.cfg.Clock.GuestTSC(),
		CR2: vm.Get64(SaveCR2), DR6: vm.Get64(SaveDR6), DR: c.debug.Current().DR,
	})
}

// Restore implements vmm.CPU: a blob from Save, or from VT-x's VMXCPU.
// On a bad blob nothing changes.
func (c *PCCPU) Restore(b []byte) error {
	var frame [512]uint64
	s := &vmm.VCPUState{MSRArea: vmm.NewMSRArea(&frame, vmm.SwitchedMSRs, make([]uint64, len(vmm.SwitchedMSRs))), MSRs: c.msr}
	// Decode into a scratch VMCB first, so that a blob the view cannot
	// take leaves this vCPU's VMCB as it was.
	var page [512]uint64
	scratch := NewVMCB(&page)
	copy(scratch.b[:], c.HW.VMCB.b[:])
	sv := &vmcsView{v: scratch, proc: c.view.proc}
	if err := vmm.RestoreVCPUState(sv, b, s); err != nil {
		return fmt.Errorf("svm: %w", err)
	}
	act, _ := sv.Read(vmm.GuestActivityState)
	c.view.other = sv.other
	c.haltedOff = act == vmm.ActivityHLT
	c.parkReported = false
	vm := c.HW.VMCB
	copy(vm.b[:], scratch.b[:])
	// The fields VT-x derives and SVM stores: CPL is SS.DPL (15.5.1,
	// VT-x takes it from SS's access rights too), 0 in real mode.
	cpl := uint8(vm.Segment(SaveSS).Attrib&AttrDPL) >> 5
	if vm.Get64(SaveCR0)&1 == 0 {
		cpl = 0
	}
	vm.Set8(SaveCPL, cpl)
	for _, m := range vmm.SwitchedMSRs {
		if off, ok := vmcbMSRs[m]; ok {
			v, _ := s.MSRArea.Get(m)
			vm.Set64(off, v)
		}
	}
	// The area holds x87 and SSE only (RestoreVCPUState checked it
	// against the zero XSaveSize): its legacy region is all of it.
	c.V.Regs, c.V.XCR0, c.waitSIPI = s.Regs, s.XCR0, s.WaitSIPI
	copy(c.fx.Guest[:], s.XSave[:512])
	// CR2 is what a page-fault handler reads: a guest paused between a
	// #PF and its read of CR2 must find the address again. A blob from
	// VT-x before version 4 has DR6 0, which no CPU reads (its reserved
	// bits are 1, AMD APM Vol. 2 13.1.1.3): the vCPU keeps its own then.
	vm.Set64(SaveCR2, s.CR2)
	if s.DR6 != 0 {
		vm.Set64(SaveDR6, s.DR6)
	}
	c.debug.Restore(cpu.DebugRegs{DR: s.DR, DR6: cpu.ResetDR6})
	// The guest's TSC continues from the saved value.
	c.cfg.Clock.Base = c.cfg.Clock.Read() - s.GuestTSC
	vm.Set64(TSCOffset, c.cfg.Clock.Offset())
	c.HW.flush = true // translations of the old state must go
	return nil
}

// Injected returns the number of interrupts injected.
func (c *PCCPU) Injected() uint64 { return c.inj.Injected }
