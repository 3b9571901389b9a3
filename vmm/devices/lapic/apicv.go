package lapic

import "encoding/binary"

// Hooks for the vCPU's CR8 and for VMX APIC virtualisation (SDM Vol. 3C
// ch. 30); see the package doc for which paths they replace.

// TPR returns the task-priority register (CR8 is TPR[7:4]).
func (l *LAPIC) TPR() uint8 {
	l.mu.Lock()
	defer l.unlock()
	return l.r.tpr
}

// SetTPR sets the task-priority register: a MOV to CR8 (value<<4), or
// the VTPR the guest wrote to the virtual-APIC page under a TPR shadow
// (offset 0x80), synced back at a VM exit.
func (l *LAPIC) SetTPR(tpr uint8) {
	l.mu.Lock()
	defer l.unlock()
	l.r.tpr = tpr
}

// TPRThreshold returns the value for the VMCS TPR threshold field (SDM
// Vol. 3C 30.1.2): the priority class of the highest pending IRR vector
// when only the TPR holds it back, so that the guest lowering VTPR below
// it exits and the vCPU can inject it; 0 when no such vector waits.
func (l *LAPIC) TPRThreshold() uint8 {
	l.mu.Lock()
	defer l.unlock()
	v := highest(&l.r.irr)
	if v < 0 {
		return 0
	}
	class := uint8(v) >> 4
	isrClass := uint8(0)
	if s := highest(&l.r.isr); s >= 0 {
		isrClass = uint8(s) >> 4
	}
	if class <= isrClass || class > l.r.tpr>>4 {
		return 0
	}
	return class
}

// EOIExitBitmap returns the vectors whose EOI must exit under
// virtual-interrupt delivery (the VMCS EOI-exit bitmap, SDM Vol. 3C
// 30.1.3): the level-triggered ones in TMR, whose EOI the IOAPIC needs.
func (l *LAPIC) EOIExitBitmap() [4]uint64 {
	l.mu.Lock()
	defer l.unlock()
	var b [4]uint64
	for i := range b {
		b[i] = uint64(l.r.tmr[2*i]) | uint64(l.r.tmr[2*i+1])<<32
	}
	return b
}

// SyncPage writes the xAPIC register page as a guest would read it (every
// readable register at its offset, the rest zero) into p: the
// virtual-APIC page a vCPU hands to VMX with APIC-register
// virtualisation, which the guest then reads without exits. Call it
// before VM entry when the LAPIC changed; call SetTPR(p[0x80]) after an
// exit to take back a VTPR the guest wrote.
func (l *LAPIC) SyncPage(p *[4096]byte) {
	l.mu.Lock()
	defer l.unlock()
	*p = [4096]byte{}
	for off := uint32(0); off < 0x400; off += 0x10 {
		if v, ok := l.readReg(off); ok {
			binary.LittleEndian.PutUint32(p[off:], v)
		}
	}
}
