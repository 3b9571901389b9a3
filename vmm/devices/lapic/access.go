package lapic

import (
	"encoding/binary"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// readReg reads the 32-bit register at an xAPIC offset; ok is false for
// offsets with no readable register. In x2APIC mode ID and LDR have their
// 32-bit forms (SDM Vol. 3A 11.12.5).
func (l *LAPIC) readReg(off uint32) (v uint32, ok bool) {
	switch {
	case off == RegID:
		if l.x2APIC() {
			return l.r.id, true
		}
		return l.r.id << 24, true
	case off == RegVersion:
		return versionValue, true
	case off == RegTPR:
		return uint32(l.r.tpr), true
	case off == RegAPR:
		return 0, true // arbitration priority: not modelled
	case off == RegPPR:
		return uint32(l.ppr()), true
	case off == RegLDR:
		if l.x2APIC() {
			return l.x2LDR(), true
		}
		return l.r.ldr, true
	case off == RegDFR:
		return l.r.dfr, !l.x2APIC()
	case off == RegSVR:
		return l.r.svr, true
	case off >= RegISR && off < RegISR+0x80:
		return l.r.isr[(off-RegISR)>>4], true
	case off >= RegTMR && off < RegTMR+0x80:
		return l.r.tmr[(off-RegTMR)>>4], true
	case off >= RegIRR && off < RegIRR+0x80:
		return l.r.irr[(off-RegIRR)>>4], true
	case off == RegESR:
		return l.r.esr, true
	case off == RegICRLow:
		return uint32(l.r.icr), true
	case off == RegICRHigh:
		return uint32(l.r.icr >> 32), !l.x2APIC()
	case off >= RegLVTTimer && off <= RegLVTError:
		return l.r.lvt[(off-RegLVTTimer)>>4], true
	case off == RegTimerInitialCount:
		if l.timerMode() == TimerTSCDeadline {
			return 0, true
		}
		return l.r.timerInitial, true
	case off == RegTimerCurrentCount:
		return l.currentCount(l.clock.Nanotime()), true
	case off == RegTimerDivide:
		return l.r.timerDivide, true
	case off == RegEOI:
		return 0, !l.x2APIC() // write-only; reads 0 in xAPIC mode
	}
	return 0, false
}

// writeReg writes the 32-bit register at an xAPIC offset; ok is false for
// offsets with no writable register.
func (l *LAPIC) writeReg(off uint32, v uint32) (ok bool) {
	switch {
	case off == RegID && !l.x2APIC():
		l.r.id = v >> 24
	case off == RegTPR:
		l.r.tpr = uint8(v)
	case off == RegEOI:
		l.endOfInterrupt()
	case off == RegLDR && !l.x2APIC():
		l.r.ldr = v & 0xFF000000
	case off == RegDFR && !l.x2APIC():
		l.r.dfr = v&0xF0000000 | 0x0FFFFFFF
	case off == RegSVR:
		l.r.svr = v & svrWritable
		if l.r.svr&SVREnable == 0 {
			// Software disable masks every LVT entry (SDM Vol. 3A 11.4.7.2).
			for i := range l.r.lvt {
				l.r.lvt[i] |= LVTMasked
			}
		}
	case off == RegESR:
		l.r.esr, l.r.esrPending = l.r.esrPending, 0
	case off == RegICRLow:
		l.r.icr = l.r.icr&^0xFFFFFFFF | uint64(v&icrLowWritable)
		l.sendIPI()
	case off == RegICRHigh && !l.x2APIC():
		l.r.icr = l.r.icr&0xFFFFFFFF | uint64(v&0xFF000000)<<32
	case off >= RegLVTTimer && off <= RegLVTError:
		i := (off - RegLVTTimer) >> 4
		v &= lvtWritable[i]
		if l.r.svr&SVREnable == 0 {
			v |= LVTMasked
		}
		v |= l.r.lvt[i] & LVTRemoteIRR
		if i == lvtTimer {
			l.writeLVTTimer(v)
		} else {
			l.r.lvt[i] = v
		}
	case off == RegTimerInitialCount:
		l.loadTimer(v)
	case off == RegTimerDivide:
		l.writeDivide(v)
	case off == RegSelfIPI && l.x2APIC():
		l.acceptFixed(uint8(v), false)
	default:
		return false
	}
	return true
}

// sendIPI sends the interrupt the ICR describes (SDM Vol. 3A 11.6.1).
func (l *LAPIC) sendIPI() {
	icr := l.r.icr
	mode := devices.DeliveryMode(icr & ICRDeliveryMode >> 8)
	if mode == devices.DeliveryINIT && icr&ICRAssert == 0 && icr&ICRLevel != 0 {
		return // INIT level de-assert: no effect since the Pentium 4
	}
	vector := uint8(icr & ICRVector)
	if (mode == devices.DeliveryFixed || mode == devices.DeliveryLowestPriority) && vector < 16 {
		l.raiseError(ESRSendIllegalVector)
		return
	}
	dest := uint32(icr>>56) & 0xFF
	if l.x2APIC() {
		dest = uint32(icr >> 32)
	}
	m := devices.Message{
		Dest:        dest,
		DestLogical: icr&ICRDestLogical != 0,
		Vector:      vector,
		Mode:        mode,
		Shorthand:   uint8(icr & ICRShorthand >> 18),
		Source:      l.r.id,
	}
	if m.Shorthand == ShorthandSelf {
		l.accept(m)
		return
	}
	l.outMsgs = append(l.outMsgs, m)
}

// MMIORead reads the xAPIC register page (devices.MMIODevice). Each
// register is 32 bits at a 16-byte-aligned offset; narrower reads see
// part of it, bytes 4-15 of a slot read zero. Nothing is readable in
// x2APIC mode or when the APIC is globally disabled.
func (l *LAPIC) MMIORead(offset uint64, data []byte) {
	l.mu.Lock()
	defer l.unlock()
	var b [16]byte
	if l.hwEnabled() && !l.x2APIC() && offset < 0x1000 {
		v, ok := l.readReg(uint32(offset &^ 0xF))
		if !ok {
			l.raiseError(ESRIllegalRegister)
		}
		binary.LittleEndian.PutUint32(b[:], v)
	}
	copy(data, b[offset&0xF:])
}

// MMIOWrite writes the xAPIC register page (devices.MMIODevice). Only
// 4-byte writes at a 16-byte-aligned offset take effect.
func (l *LAPIC) MMIOWrite(offset uint64, data []byte) {
	l.mu.Lock()
	defer l.unlock()
	if len(data) != 4 || offset&0xF != 0 || offset >= 0x1000 || !l.hwEnabled() || l.x2APIC() {
		return
	}
	if !l.writeReg(uint32(offset), binary.LittleEndian.Uint32(data)) {
		if _, readable := l.readReg(uint32(offset)); !readable {
			l.raiseError(ESRIllegalRegister) // a reserved offset; read-only ones ignore writes
		}
	}
}

// x2APIC registers that are read-only or write-only (SDM Vol. 3A Table
// 11-6).
func x2ReadOnly(off uint32) bool {
	switch {
	case off == RegID, off == RegVersion, off == RegPPR, off == RegLDR,
		off == RegTimerCurrentCount,
		off >= RegISR && off < RegIRR+0x80:
		return true
	}
	return false
}

// ReadMSR reads IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register
// (0x800-0x8FF, x2APIC mode only; the ICR at 0x830 is 64 bits). An error
// wraps ErrGP: the vCPU injects #GP(0).
func (l *LAPIC) ReadMSR(msr uint32) (uint64, error) {
	l.mu.Lock()
	defer l.unlock()
	switch {
	case msr == MSRAPICBase:
		return l.r.apicBase, nil
	case msr == MSRTSCDeadline:
		if l.timerMode() != TimerTSCDeadline {
			return 0, nil
		}
		return l.r.tscDeadline, nil
	case msr < MSRx2APICFirst || msr > MSRx2APICLast:
		return 0, fmt.Errorf("%w: rdmsr %#x: not a LAPIC MSR", ErrGP, msr)
	case !l.x2APIC():
		return 0, fmt.Errorf("%w: rdmsr %#x outside x2APIC mode", ErrGP, msr)
	}
	off := (msr - MSRx2APICFirst) << 4
	if off == RegICRLow {
		return l.r.icr, nil
	}
	v, ok := l.readReg(off)
	if !ok || off == RegEOI || off == RegSelfIPI || off == RegAPR { // no x2APIC APR MSR
		return 0, fmt.Errorf("%w: rdmsr %#x: no readable x2APIC register", ErrGP, msr)
	}
	return uint64(v), nil
}

// WriteMSR writes IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register
// (x2APIC mode only). An error wraps ErrGP and changes nothing.
func (l *LAPIC) WriteMSR(msr uint32, v uint64) error {
	l.mu.Lock()
	defer l.unlock()
	switch {
	case msr == MSRAPICBase:
		return l.writeAPICBase(v)
	case msr == MSRTSCDeadline:
		if l.timerMode() == TimerTSCDeadline {
			l.r.tscDeadline = v
			l.poll(l.clock.Nanotime())
		}
		return nil
	case msr < MSRx2APICFirst || msr > MSRx2APICLast:
		return fmt.Errorf("%w: wrmsr %#x: not a LAPIC MSR", ErrGP, msr)
	case !l.x2APIC():
		return fmt.Errorf("%w: wrmsr %#x outside x2APIC mode", ErrGP, msr)
	}
	off := (msr - MSRx2APICFirst) << 4
	if off == RegICRLow {
		if v&^(0xFFFFFFFF<<32|icrLowWritable) != 0 {
			return fmt.Errorf("%w: wrmsr ICR %#x: reserved bits", ErrGP, v)
		}
		l.r.icr = v
		l.sendIPI()
		return nil
	}
	if v>>32 != 0 || x2ReadOnly(off) || (off == RegEOI || off == RegESR) && v != 0 {
		return fmt.Errorf("%w: wrmsr %#x value %#x", ErrGP, msr, v)
	}
	if !l.writeReg(off, uint32(v)) {
		return fmt.Errorf("%w: wrmsr %#x: no writable x2APIC register", ErrGP, msr)
	}
	return nil
}

// writeAPICBase writes IA32_APIC_BASE (SDM Vol. 3A 11.12.5, Figure
// 11-27): disabled → xAPIC or x2APIC, xAPIC → x2APIC, either → disabled.
// Disabling resets the registers (ID kept); BSP is read-only.
func (l *LAPIC) writeAPICBase(v uint64) error {
	if v&^(APICBaseAddrMask|APICBaseEnable|APICBaseExtd|APICBaseBSP) != 0 {
		return fmt.Errorf("%w: IA32_APIC_BASE %#x: reserved bits", ErrGP, v)
	}
	en, x2 := v&APICBaseEnable != 0, v&APICBaseExtd != 0
	switch {
	case x2 && !en:
		return fmt.Errorf("%w: IA32_APIC_BASE %#x: x2APIC without enable", ErrGP, v)
	case en && !x2 && l.x2APIC():
		return fmt.Errorf("%w: IA32_APIC_BASE %#x: x2APIC to xAPIC", ErrGP, v)
	}
	v = v&^APICBaseBSP | l.r.apicBase&APICBaseBSP
	wasEnabled := l.hwEnabled()
	l.r.apicBase = v
	if !en && wasEnabled {
		l.resetRegs()
	}
	return nil
}
