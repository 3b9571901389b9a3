package lapic

import "github.com/doppel-ft/doppel/vmm/devices"

// The interface of the vCPU loop: what to inject (PendingVector, Ack,
// TakeNMI, ExtINTPending), the AP start-up state (TakeINIT, TakeSIPI) and
// the LINT0/LINT1 input lines.

// PendingVector returns the highest vector in IRR whose priority class is
// above the processor priority: the interrupt the vCPU should inject when
// the guest can take one. It first brings the timer up to the clock.
func (l *LAPIC) PendingVector() (vector uint8, ok bool) {
	l.mu.Lock()
	defer l.unlock()
	l.poll(l.clock.Nanotime())
	if !l.hwEnabled() {
		return 0, false
	}
	v := highest(&l.r.irr)
	if v < 0 || uint8(v)>>4 <= l.ppr()>>4 {
		return 0, false
	}
	return uint8(v), true
}

// Ack moves vector from IRR to ISR: the vCPU has injected it.
func (l *LAPIC) Ack(vector uint8) {
	l.mu.Lock()
	defer l.unlock()
	clearBit(&l.r.irr, vector)
	setBit(&l.r.isr, vector)
}

// endOfInterrupt ends the highest in-service interrupt (SDM Vol. 3A 11.8.5) and
// queues the broadcast of a level-triggered one.
func (l *LAPIC) endOfInterrupt() {
	v := highest(&l.r.isr)
	if v < 0 {
		return
	}
	clearBit(&l.r.isr, uint8(v))
	if testBit(&l.r.tmr, uint8(v)) {
		l.outEOIs = append(l.outEOIs, uint8(v))
	}
}

// TakeNMI reports and clears a pending NMI (from an NMI message or LINT1).
func (l *LAPIC) TakeNMI() bool {
	l.mu.Lock()
	defer l.unlock()
	p := l.r.nmiPending
	l.r.nmiPending = false
	return p
}

// TakeINIT reports and clears a received INIT: the vCPU resets its
// registers and waits for a SIPI (TakeSIPI) without running the guest.
func (l *LAPIC) TakeINIT() bool {
	l.mu.Lock()
	defer l.unlock()
	p := l.r.initPending
	l.r.initPending = false
	return p
}

// TakeSIPI reports and clears a start-up IPI received after an INIT: the
// vCPU starts in real mode at CS = vector<<8, IP = 0 (SDM Vol. 3A
// 9.4.4.1). Later SIPIs are ignored until the next INIT.
func (l *LAPIC) TakeSIPI() (vector uint8, ok bool) {
	l.mu.Lock()
	defer l.unlock()
	v, p := l.r.sipiVector, l.r.sipiPending
	l.r.sipiPending = false
	return v, p
}

// WaitingForSIPI reports whether the vCPU is between INIT and SIPI.
func (l *LAPIC) WaitingForSIPI() bool {
	l.mu.Lock()
	defer l.unlock()
	return l.r.waitSIPI
}

// ExtINTPending reports that the vCPU should take its vector from the
// 8259 PIC (its INTA cycle): an ExtINT message arrived, or LINT0 is
// asserted and either the APIC is globally disabled (LINT0 is then the
// plain INTR pin) or LVT LINT0 is unmasked in ExtINT mode (virtual wire).
func (l *LAPIC) ExtINTPending() bool {
	l.mu.Lock()
	defer l.unlock()
	if l.r.extINT {
		return true
	}
	e := l.r.lvt[lvtLINT0]
	if !l.lintAsserted(0) {
		return false
	}
	return !l.hwEnabled() || e&LVTMasked == 0 && devices.DeliveryMode(e&LVTDeliveryMode>>8) == devices.DeliveryExtINT
}

// AckExtINT clears an ExtINT message once the vCPU injected the PIC's
// vector; a LINT0 level stays until the PIC lowers it.
func (l *LAPIC) AckExtINT() {
	l.mu.Lock()
	defer l.unlock()
	l.r.extINT = false
}

// lintAsserted reports whether LINT0 or LINT1 requests. Like the IOAPIC,
// the LVT polarity bit is stored but does not invert the input: a Line's
// level means "requested" by the devices contract.
func (l *LAPIC) lintAsserted(i int) bool { return l.r.lint[i] }

// lint is the devices.Line of LINT0 or LINT1.
type lint struct {
	l *LAPIC
	i int
}

func (p lint) Set(high bool) { p.l.setLINT(p.i, high) }

// LINT0 returns the LINT0 input: the 8259 PIC's INTR in virtual-wire mode.
func (l *LAPIC) LINT0() devices.Line { return lint{l, 0} }

// LINT1 returns the LINT1 input, usually wired to NMI.
func (l *LAPIC) LINT1() devices.Line { return lint{l, 1} }

// setLINT records an input level; a rising edge of assertion delivers the
// LVT entry's NMI or fixed interrupt (ExtINT is a level: ExtINTPending).
func (l *LAPIC) setLINT(i int, high bool) {
	l.mu.Lock()
	defer l.unlock()
	was := l.lintAsserted(i)
	l.r.lint[i] = high
	if !l.lintAsserted(i) || was {
		return
	}
	if !l.hwEnabled() {
		l.kick = i == 0 // LINT0 is the plain INTR pin: ExtINTPending
		return
	}
	e := l.r.lvt[lvtLINT0+i]
	if e&LVTMasked != 0 {
		return
	}
	switch devices.DeliveryMode(e & LVTDeliveryMode >> 8) {
	case devices.DeliveryFixed:
		l.acceptFixed(uint8(e&LVTVector), false)
	case devices.DeliveryNMI:
		l.r.nmiPending = true
		l.kick = true
	case devices.DeliveryExtINT:
		l.kick = true // ExtINTPending is now true
	}
}

// WakePending reports, without taking it, a received NMI or INIT (what
// ends a halt with interrupts disabled, SDM Vol. 3A 9.1) or a SIPI after
// INIT (what starts a waiting processor). A parked vCPU's machine asks it
// from another vCPU's thread.
func (l *LAPIC) WakePending() bool {
	l.mu.Lock()
	defer l.unlock()
	return l.r.nmiPending || l.r.initPending || l.r.sipiPending
}
