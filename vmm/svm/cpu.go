package svm

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
)

// CPU is an SVM vCPU behind vmm.CPU, the interface vmm.Machine drives:
// Step is one VMRUN and the handling of its #VMEXIT, Kick forces an exit,
// Save and Restore move the guest state of the VMCB and the general
// registers as a versioned blob. Not yet here (the VT-x CPU has them):
// event injection, timers, guest x87/SSE switching, MSR emulation.
type CPU struct {
	HW *HWVCPU
	V  *VCPU

	tid     int // the pinned host thread, for Kick's tgkill
	inGuest atomic.Bool
	kicked  atomic.Bool
}

var _ vmm.CPU = (*CPU)(nil)

// NewCPU wraps h and v; it must run on the pinned thread that made h.
func NewCPU(h *HWVCPU, v *VCPU) *CPU {
	return &CPU{HW: h, V: v, tid: syscall.Gettid()}
}

// Step implements vmm.CPU.
func (c *CPU) Step() (vmm.Action, error) {
	c.kicked.Store(false)
	c.inGuest.Store(true)
	e := c.HW.enter(c.V)
	c.inGuest.Store(false)
	return Dispatch(c.V, &e)
}

// Kick implements vmm.CPU: a vCPU in the guest gets SIGURG by tgkill, which
// the boot layer turns into an IPI to its CPU: a physical interrupt, so an
// INTR #VMEXIT (the INTR intercept is always on).
func (c *CPU) Kick() {
	c.kicked.Store(true)
	if c.inGuest.Load() {
		syscall.Tgkill(syscall.Getpid(), c.tid, syscall.SIGURG)
	}
}

// Close implements vmm.CPU. SVM has no VMCLEAR: the VMCB frame may be
// reused once no VMRUN uses it.
func (c *CPU) Close() error { return nil }

// savedSegments and savedFields are the state-save-area fields Save
// keeps (App. B table B-2), in blob order.
var (
	savedSegments = []int{SaveES, SaveCS, SaveSS, SaveDS, SaveFS, SaveGS, SaveGDTR, SaveLDTR, SaveIDTR, SaveTR}
	savedFields   = []int{SaveEFER, SaveCR4, SaveCR3, SaveCR0, SaveDR7, SaveDR6, SaveRFLAGS, SaveRIP, SaveRSP,
		SaveSTAR, SaveLSTAR, SaveCSTAR, SaveSFMASK, SaveKernelGSBase, SaveSysenterCS, SaveSysenterESP,
		SaveSysenterEIP, SaveCR2, SaveGPAT, SaveDBGCTL, InterruptShadow, EventInj}
)

const (
	cpuStateMagic   = "SVMC"
	cpuStateVersion = 1
)

// Save implements vmm.CPU: the VMCB's guest state (segments, CPL, control
// and debug registers, RIP/RSP/RFLAGS, the VMLOAD/VMSAVE MSRs, the
// interrupt shadow and a pending injection) and the general registers.
// The layout is AMD's; the package doc says what a vendor-neutral form
// would take.
func (c *CPU) Save() ([]byte, error) {
	v := c.V.VMCB
	e := devices.NewEncoder(cpuStateMagic, cpuStateVersion)
	for _, off := range savedSegments {
		s := v.Segment(off)
		e.U16(s.Selector)
		e.U16(s.Attrib)
		e.U32(s.Limit)
		e.U64(s.Base)
	}
	e.U8(v.Get8(SaveCPL))
	for _, off := range savedFields {
		e.U64(v.Get64(off))
	}
	r := &c.V.Regs
	for _, x := range []uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RBP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15} {
		e.U64(x)
	}
	return e.Finish(), nil
}

// Restore implements vmm.CPU. On a bad blob nothing changes.
func (c *CPU) Restore(b []byte) error {
	d := devices.NewDecoder(b, cpuStateMagic, cpuStateVersion)
	segs := make([]Segment, len(savedSegments))
	for i := range segs {
		segs[i] = Segment{Selector: d.U16(), Attrib: d.U16(), Limit: d.U32(), Base: d.U64()}
	}
	cpl := d.U8()
	d.Check(cpl <= 3, "CPL %d", cpl)
	vals := make([]uint64, len(savedFields))
	for i := range vals {
		vals[i] = d.U64()
	}
	var r vmm.Regs
	for _, p := range []*uint64{&r.RAX, &r.RBX, &r.RCX, &r.RDX, &r.RSI, &r.RDI, &r.RBP, &r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15} {
		*p = d.U64()
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("svm: restore vcpu: %w", err)
	}
	v := c.V.VMCB
	for i, off := range savedSegments {
		v.SetSegment(off, segs[i])
	}
	v.Set8(SaveCPL, cpl)
	for i, off := range savedFields {
		v.Set64(off, vals[i])
	}
	c.V.Regs = r
	c.HW.flush = true // translations of the old state must go
	return nil
}
