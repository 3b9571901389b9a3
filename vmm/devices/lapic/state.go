package lapic

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

const (
	stateMagic   = "LAPC"
	stateVersion = 1
)

// Save returns the LAPIC's state: magic "LAPC", version 1, fields in this
// order (devices.Encoder):
//
//	apicBase u64, id u32, tpr u8, ldr u32, dfr u32, svr u32,
//	isr 8×u32, tmr 8×u32, irr 8×u32, esr u32, esrPending u32, icr u64,
//	lvt 6×u32 (timer, thermal, perf, LINT0, LINT1, error),
//	timerInitial u32, timerDivide u32, timerStart i64 (guest ns),
//	timerArmed bool, timerPeriods u64, tscDeadline u64,
//	lint0 bool, lint1 bool (input levels), nmiPending bool,
//	initPending bool, waitSIPI bool, sipiPending bool, sipiVector u8,
//	extINT bool
//
// Times are guest nanoseconds of the machine's Clock, which continues
// across a restore. The construction Config is not saved.
func (l *LAPIC) Save() ([]byte, error) {
	l.mu.Lock()
	defer l.unlock()
	r := &l.r
	e := devicesEncoder()
	e.U64(r.apicBase)
	e.U32(r.id)
	e.U8(r.tpr)
	e.U32(r.ldr)
	e.U32(r.dfr)
	e.U32(r.svr)
	for _, b := range [][8]uint32{r.isr, r.tmr, r.irr} {
		for _, w := range b {
			e.U32(w)
		}
	}
	e.U32(r.esr)
	e.U32(r.esrPending)
	e.U64(r.icr)
	for _, v := range r.lvt {
		e.U32(v)
	}
	e.U32(r.timerInitial)
	e.U32(r.timerDivide)
	e.I64(r.timerStart)
	e.Bool(r.timerArmed)
	e.U64(r.timerPeriods)
	e.U64(r.tscDeadline)
	e.Bool(r.lint[0])
	e.Bool(r.lint[1])
	e.Bool(r.nmiPending)
	e.Bool(r.initPending)
	e.Bool(r.waitSIPI)
	e.Bool(r.sipiPending)
	e.U8(r.sipiVector)
	e.Bool(r.extINT)
	return e.Finish(), nil
}

// Restore puts back a state from Save into a LAPIC built with the same
// Config. A bad blob returns an error wrapping devices.ErrBadState and
// changes nothing.
func (l *LAPIC) Restore(state []byte) error {
	d := devicesDecoder(state)
	var r regs
	r.apicBase = d.U64()
	d.Check(r.apicBase&^(APICBaseAddrMask|APICBaseEnable|APICBaseExtd|APICBaseBSP) == 0, "lapic: IA32_APIC_BASE %#x", r.apicBase)
	d.Check(r.apicBase&APICBaseExtd == 0 || r.apicBase&APICBaseEnable != 0, "lapic: x2APIC without enable")
	r.id = d.U32()
	r.tpr = d.U8()
	r.ldr = d.U32()
	d.Check(r.ldr&0x00FFFFFF == 0, "lapic: LDR %#x", r.ldr)
	r.dfr = d.U32()
	d.Check(r.dfr&0x0FFFFFFF == 0x0FFFFFFF, "lapic: DFR %#x", r.dfr)
	r.svr = d.U32()
	d.Check(r.svr&^svrWritable == 0, "lapic: SVR %#x", r.svr)
	for _, b := range []*[8]uint32{&r.isr, &r.tmr, &r.irr} {
		for i := range b {
			b[i] = d.U32()
		}
	}
	r.esr = d.U32()
	r.esrPending = d.U32()
	r.icr = d.U64()
	d.Check(r.icr&^(0xFFFFFFFF<<32|icrLowWritable) == 0, "lapic: ICR %#x", r.icr)
	for i := range r.lvt {
		r.lvt[i] = d.U32()
		d.Check(r.lvt[i]&^(lvtWritable[i]|LVTRemoteIRR) == 0, "lapic: LVT %d %#x", i, r.lvt[i])
	}
	r.timerInitial = d.U32()
	r.timerDivide = d.U32()
	d.Check(r.timerDivide&^tdcrWritable == 0, "lapic: divide configuration %#x", r.timerDivide)
	r.timerStart = d.I64()
	r.timerArmed = d.Bool()
	d.Check(!r.timerArmed || r.timerInitial != 0, "lapic: timer armed with count 0")
	r.timerPeriods = d.U64()
	r.tscDeadline = d.U64()
	r.lint[0] = d.Bool()
	r.lint[1] = d.Bool()
	r.nmiPending = d.Bool()
	r.initPending = d.Bool()
	r.waitSIPI = d.Bool()
	r.sipiPending = d.Bool()
	r.sipiVector = d.U8()
	r.extINT = d.Bool()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("lapic: restore: %w", err)
	}
	l.mu.Lock()
	defer l.unlock()
	l.r = r
	return nil
}

func devicesEncoder() *devices.Encoder { return devices.NewEncoder(stateMagic, stateVersion) }

func devicesDecoder(b []byte) *devices.Decoder {
	return devices.NewDecoder(b, stateMagic, stateVersion)
}
