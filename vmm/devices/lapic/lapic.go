package lapic

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// ErrGP is wrapped by the MSR errors the guest must see as #GP(0): an
// x2APIC register read or written outside x2APIC mode, a read-only or
// write-only register used the wrong way, reserved bits set, or an invalid
// IA32_APIC_BASE transition.
var ErrGP = errors.New("lapic: general-protection fault")

// DefaultBusHz is the timer input clock when Config.BusHz is 0: 1 GHz, as
// KVM uses, so a timer tick is a nanosecond before the divider.
const DefaultBusHz = 1_000_000_000

// Config is a LAPIC's construction-time configuration.
type Config struct {
	ID    uint32        // APIC ID (8 bits in xAPIC mode)
	BSP   bool          // IA32_APIC_BASE.BSP
	Clock devices.Clock // guest time for the timer
	// TSCHz is the guest TSC frequency. The guest TSC must read
	// Clock.Nanotime()×TSCHz/1e9 (TSC 0 at clock 0) for TSC-deadline mode
	// to fire when the guest expects.
	TSCHz uint64
	// BusHz is the timer's input clock before the divider, at most 1 GHz;
	// 0 means DefaultBusHz. Report it to the guest as the CPUID 0x15 core
	// crystal frequency: Linux then sets its APIC timer period from it
	// instead of calibrating against a PIT it does not have.
	BusHz uint64
	// Sink receives the IPIs this LAPIC sends (a Router). A self IPI is
	// accepted locally without it. Nil drops other IPIs.
	Sink devices.MessageSink
	// EOI listeners are told of the EOI of every level-triggered vector
	// (the IOAPICs).
	EOI []devices.EOIListener
	// Wake, if set, is called when something became pending for the vCPU
	// (an IRR vector, NMI, INIT, SIPI or ExtINT), on the thread that made
	// it so and with no LAPIC lock held: the machine wakes a halted vCPU
	// or kicks a running one out of the guest. It must not block.
	Wake func()
}

// regs is the guest-visible state, saved and restored as a whole.
type regs struct {
	apicBase     uint64
	id           uint32
	tpr          uint8
	ldr          uint32 // xAPIC LDR; in x2APIC mode derived from id
	dfr          uint32 // bits 31:28 (the rest read as ones)
	svr          uint32
	isr          [8]uint32
	tmr          [8]uint32
	irr          [8]uint32
	esr          uint32 // the value a read returns
	esrPending   uint32 // errors since ESR was last written
	icr          uint64 // low half | high half<<32
	lvt          [numLVT]uint32
	timerInitial uint32
	timerDivide  uint32
	timerStart   int64  // guest ns the count was loaded
	timerArmed   bool   // one-shot or periodic count running
	timerPeriods uint64 // periodic: whole periods already fired
	tscDeadline  uint64
	lint         [2]bool // LINT0, LINT1 input levels
	nmiPending   bool
	initPending  bool
	waitSIPI     bool
	sipiPending  bool
	sipiVector   uint8
	extINT       bool // an ExtINT message waits for the vCPU
}

// LAPIC is one local APIC. It is safe for concurrent use: one mutex
// guards its state; IPIs and EOI broadcasts it causes are sent after that
// mutex is released, so a Router or IOAPIC may call back into it.
type LAPIC struct {
	clock devices.Clock
	tscHz uint64
	busHz uint64
	sink  devices.MessageSink
	eoi   []devices.EOIListener
	wake  func()

	mu      sync.Mutex
	r       regs
	outMsgs []devices.Message // IPIs to send once mu is released
	outEOIs []uint8           // level EOIs to broadcast once mu is released
	kick    bool              // call wake once mu is released
	// irrNew holds the vectors accepted since LoadVirtualAPIC: with
	// virtual-interrupt delivery they are not yet in the page's VIRR.
	irrNew [8]uint32
	// pageStale says an INIT reset the LAPIC since LoadVirtualAPIC.
	pageStale bool
}

// New returns a LAPIC in its power-up state (SDM Vol. 3A 11.4.7.1):
// globally enabled in xAPIC mode at DefaultBase, software-disabled, every
// LVT entry masked.
func New(c Config) *LAPIC {
	if c.Clock == nil || c.TSCHz == 0 {
		panic("lapic: Config needs a Clock and TSCHz") // programming error
	}
	if c.BusHz == 0 {
		c.BusHz = DefaultBusHz
	}
	if c.BusHz > 1_000_000_000 {
		panic(fmt.Sprintf("lapic: BusHz %d above 1 GHz", c.BusHz)) // programming error
	}
	l := &LAPIC{clock: c.Clock, tscHz: c.TSCHz, busHz: c.BusHz, sink: c.Sink, eoi: c.EOI, wake: c.Wake}
	l.r.id = c.ID
	l.r.apicBase = DefaultBase | APICBaseEnable
	if c.BSP {
		l.r.apicBase |= APICBaseBSP
	}
	l.resetRegs()
	return l
}

// resetRegs puts every register but the ID and IA32_APIC_BASE in its
// power-up and INIT state (SDM Vol. 3A 11.4.7.1, 11.4.7.3).
func (l *LAPIC) resetRegs() {
	l.r = regs{apicBase: l.r.apicBase, id: l.r.id, lint: l.r.lint}
	l.r.dfr = 0xFFFFFFFF
	l.r.svr = 0xFF
	for i := range l.r.lvt {
		l.r.lvt[i] = LVTMasked
	}
}

// unlock releases mu, then sends the IPIs and EOI broadcasts queued under
// it and calls Wake if something became pending.
func (l *LAPIC) unlock() {
	if len(l.outMsgs) == 0 && len(l.outEOIs) == 0 && !l.kick {
		l.mu.Unlock()
		return
	}
	// Copy out (to the stack in the usual case of one or two) so the
	// queues keep their capacity without being shared after Unlock.
	var msgBuf [2]devices.Message
	var eoiBuf [4]uint8
	msgs := append(msgBuf[:0], l.outMsgs...)
	eois := append(eoiBuf[:0], l.outEOIs...)
	kick := l.kick
	l.outMsgs, l.outEOIs, l.kick = l.outMsgs[:0], l.outEOIs[:0], false
	l.mu.Unlock()
	if kick && l.wake != nil {
		l.wake()
	}
	for _, m := range msgs {
		if l.sink != nil {
			l.sink.Deliver(m)
		}
	}
	for _, v := range eois {
		for _, e := range l.eoi {
			e.EOI(v)
		}
	}
}

func (l *LAPIC) hwEnabled() bool { return l.r.apicBase&APICBaseEnable != 0 }
func (l *LAPIC) x2APIC() bool    { return l.r.apicBase&APICBaseExtd != 0 }
func (l *LAPIC) swEnabled() bool { return l.hwEnabled() && l.r.svr&SVREnable != 0 }

// Vector bitmaps (IRR, ISR, TMR) are 8 × 32 bits, as in the register page.
func setBit(b *[8]uint32, v uint8)       { b[v>>5] |= 1 << (v & 31) }
func clearBit(b *[8]uint32, v uint8)     { b[v>>5] &^= 1 << (v & 31) }
func testBit(b *[8]uint32, v uint8) bool { return b[v>>5]&(1<<(v&31)) != 0 }

// highest returns the highest vector set in b, or -1.
func highest(b *[8]uint32) int {
	for i := 7; i >= 0; i-- {
		if b[i] != 0 {
			return i*32 + 31 - bits.LeadingZeros32(b[i])
		}
	}
	return -1
}

// ppr is the processor priority (SDM Vol. 3A 11.8.3.1).
func (l *LAPIC) ppr() uint8 {
	isrv := uint8(0)
	if v := highest(&l.r.isr); v >= 0 {
		isrv = uint8(v)
	}
	if l.r.tpr>>4 >= isrv>>4 {
		return l.r.tpr
	}
	return isrv & 0xF0
}

// raiseError latches an error for ESR and sends the LVT error interrupt.
func (l *LAPIC) raiseError(bit uint32) {
	l.r.esrPending |= bit
	e := l.r.lvt[lvtError]
	if e&LVTMasked != 0 || !l.swEnabled() {
		return
	}
	if v := uint8(e & LVTVector); v < 16 {
		// An illegal error vector is itself an error, raised once.
		l.r.esrPending |= ESRReceiveIllegalVector
	} else {
		setBit(&l.r.irr, v)
		setBit(&l.irrNew, v)
		clearBit(&l.r.tmr, v)
		l.kick = true
	}
}

// acceptFixed sets a fixed interrupt pending in IRR (SDM Vol. 3A 11.8.3).
// Vectors 0-15 are illegal; a software-disabled APIC drops fixed
// interrupts (as KVM does).
func (l *LAPIC) acceptFixed(vector uint8, level bool) {
	if !l.swEnabled() {
		return
	}
	if vector < 16 {
		l.raiseError(ESRReceiveIllegalVector)
		return
	}
	setBit(&l.r.irr, vector)
	setBit(&l.irrNew, vector)
	l.kick = true
	if level {
		setBit(&l.r.tmr, vector)
	} else {
		clearBit(&l.r.tmr, vector)
	}
}

// accept takes a message addressed to this LAPIC; mu is held.
func (l *LAPIC) accept(m devices.Message) {
	if !l.hwEnabled() {
		return
	}
	switch m.Mode {
	case devices.DeliveryFixed, devices.DeliveryLowestPriority:
		l.acceptFixed(m.Vector, m.Level)
	case devices.DeliveryNMI:
		l.r.nmiPending = true
		l.kick = true
	case devices.DeliveryINIT:
		l.resetRegs()
		l.pageStale = true
		l.r.initPending = true
		l.r.waitSIPI = true
		l.kick = true
	case devices.DeliveryStartup:
		if l.r.waitSIPI {
			l.r.waitSIPI = false
			l.r.sipiPending = true
			l.r.sipiVector = m.Vector
			l.kick = true
		}
	case devices.DeliveryExtINT:
		l.r.extINT = true
		l.kick = true
	}
	// SMI and reserved modes are ignored: doppel has no SMM.
}

// Deliver accepts m as addressed to this LAPIC (the Router has matched
// the destination): fixed and lowest-priority set IRR (and TMR for
// level-triggered), NMI, INIT, SIPI and ExtINT set what the vCPU asks
// for with TakeNMI, TakeINIT, TakeSIPI and ExtINTPending.
func (l *LAPIC) Deliver(m devices.Message) {
	l.mu.Lock()
	defer l.unlock()
	l.accept(m)
}

// ID returns the APIC ID.
func (l *LAPIC) ID() uint32 {
	l.mu.Lock()
	defer l.unlock()
	return l.r.id
}

// Base returns the guest-physical address of the xAPIC page from
// IA32_APIC_BASE, and whether the page is reachable (APIC globally enabled
// in xAPIC mode). The machine maps the MMIO device there.
func (l *LAPIC) Base() (uint64, bool) {
	l.mu.Lock()
	defer l.unlock()
	return l.r.apicBase & APICBaseAddrMask, l.hwEnabled() && !l.x2APIC()
}

// matches reports whether a message with this destination addresses this
// LAPIC (SDM Vol. 3A 11.6.2, 11.12.10). Physical 0xFF and 0xFFFFFFFF are
// broadcasts. In x2APIC mode 0xFF is a valid APIC ID to the SDM, but the
// IOAPIC's 8-bit destination 0xFF means broadcast (KVM keeps the same
// quirk), and no doppel vCPU has ID 255 (acpi.MaxCPUs is 254).
func (l *LAPIC) matches(dest uint32, logical bool) bool {
	l.mu.Lock()
	defer l.unlock()
	if !l.hwEnabled() {
		return false
	}
	if l.x2APIC() {
		if dest == 0xFFFFFFFF {
			return true
		}
		if !logical {
			return dest == l.r.id || dest == 0xFF
		}
		ldr := l.x2LDR()
		return dest>>16 == ldr>>16 && dest&ldr&0xFFFF != 0
	}
	d := uint8(dest)
	if !logical {
		return d == 0xFF || d == uint8(l.r.id)
	}
	ldr := uint8(l.r.ldr >> 24)
	if l.r.dfr>>28 == DFRFlat {
		return d&ldr != 0
	}
	// Cluster model: bits 7:4 the cluster (15 = all), 3:0 a member mask.
	return (d>>4 == 0xF || d>>4 == ldr>>4) && d&ldr&0xF != 0
}

// x2LDR is the x2APIC logical ID (SDM Vol. 3A 11.12.10.2): cluster
// id[19:4] in bits 31:16, bit id[3:0] set in bits 15:0.
func (l *LAPIC) x2LDR() uint32 {
	return (l.r.id>>4)<<16 | 1<<(l.r.id&0xF)
}
