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
	l.writePage(p)
}

// writePage writes every readable register at its offset; mu is held.
func (l *LAPIC) writePage(p *[4096]byte) {
	*p = [4096]byte{}
	for off := uint32(0); off < 0x400; off += 0x10 {
		if v, ok := l.readReg(off); ok {
			binary.LittleEndian.PutUint32(p[off:], v)
		}
	}
}

// Virtual-interrupt delivery (SDM Vol. 3C 30.2): while the guest runs, the
// CPU delivers from the virtual-APIC page's VIRR into VISR and virtualises
// EOI, tracking RVI and SVI in the VMCS guest interrupt status. The LAPIC
// stays the owner of the state; a vCPU using the feature does:
//
//	before entry:  status := l.LoadVirtualAPIC(page) → VMCS guest
//	               interrupt status; l.EOIExitBitmap() → EOI-exit bitmap
//	after exit:    l.StoreVirtualAPIC(page)
//	EOI-induced exit (reason 45) for vector v: l.VirtualEOI(v)
//
// and never calls PendingVector/Ack for fixed interrupts. Interrupts
// accepted while the guest runs (IPIs, the IOAPIC) land in the LAPIC, not
// the page, and call Config.Wake: the vCPU kicks the guest out and the next
// LoadVirtualAPIC offers them. Save the LAPIC only after StoreVirtualAPIC.

// Offsets of the virtual-APIC page (SDM Vol. 3C 30.1.1): the xAPIC layout.
const (
	vapicVTPR = RegTPR
	vapicVISR = RegISR
	vapicVIRR = RegIRR
)

// LoadVirtualAPIC writes the register page (SyncPage) and returns the
// guest interrupt status for the VMCS: RVI (the highest IRR vector) in bits
// 7:0, SVI (the highest ISR vector) in bits 15:8. It first brings the
// timer up to the clock.
func (l *LAPIC) LoadVirtualAPIC(p *[4096]byte) (guestInterruptStatus uint16) {
	l.mu.Lock()
	defer l.unlock()
	l.poll(l.clock.Nanotime())
	l.irrNew = [8]uint32{}
	l.pageStale = false
	l.writePage(p)
	var rvi, svi uint8
	if v := highest(&l.r.irr); v > 0 {
		rvi = uint8(v)
	}
	if v := highest(&l.r.isr); v > 0 {
		svi = uint8(v)
	}
	return uint16(svi)<<8 | uint16(rvi)
}

// StoreVirtualAPIC takes back from the page what the CPU and guest
// changed: VTPR, VISR (delivered and virtually EOI'd vectors) and VIRR
// (vectors not yet delivered, and virtualised self-IPIs), keeping the
// vectors accepted since LoadVirtualAPIC. After an INIT the page is stale
// and ignored.
func (l *LAPIC) StoreVirtualAPIC(p *[4096]byte) {
	l.mu.Lock()
	defer l.unlock()
	if l.pageStale {
		return
	}
	l.r.tpr = p[vapicVTPR]
	for i := 0; i < 8; i++ {
		l.r.isr[i] = binary.LittleEndian.Uint32(p[vapicVISR+16*i:])
		l.r.irr[i] = binary.LittleEndian.Uint32(p[vapicVIRR+16*i:]) | l.irrNew[i]
	}
	l.irrNew = [8]uint32{}
}

// VirtualEOI completes an EOI-induced VM exit: the CPU already cleared
// vector from VISR; the LAPIC broadcasts the EOI if the vector is
// level-triggered.
func (l *LAPIC) VirtualEOI(vector uint8) {
	l.mu.Lock()
	defer l.unlock()
	clearBit(&l.r.isr, vector)
	if testBit(&l.r.tmr, vector) {
		l.outEOIs = append(l.outEOIs, vector)
	}
}
