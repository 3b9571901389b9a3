// Package ioapic models an 82093AA-style I/O APIC (Intel 82093AA I/O
// Advanced Programmable Interrupt Controller datasheet, 1996, §3; the
// redirection entry and message encodings of SDM Vol. 3A §11.6 and §11.11):
// 24 input pins, each routed by a 64-bit redirection entry to the local
// APICs as a devices.Message through a devices.MessageSink (a lapic.Router).
//
// The register window is two 32-bit registers at the MMIO base (usually
// 0xFEC00000): IOREGSEL at offset 0x00 selects a register, IOWIN at offset
// 0x10 reads or writes it. The registers are IOAPICID (0x00), IOAPICVER
// (0x01, version 0x11 and 23 as the highest entry), IOAPICARB (0x02) and
// the redirection table (0x10 + 2n low half, 0x11 + 2n high half).
//
// Inputs are levels (Pin(n).Set(high)) meaning, by the devices contract,
// "interrupt requested", not an electrical level. So the polarity bit of
// an entry is kept for the guest to read back but does not invert the
// input (as in QEMU's and KVM's IOAPICs): a PCI INTx source that the ACPI
// tables call active-low still calls Set(true) while it requests. An
// edge-triggered entry sends one message per rising edge; an edge seen while the entry is masked is
// latched and sent when it is unmasked (as QEMU's model does). A
// level-triggered entry sends a message while the pin is asserted and sets
// Remote IRR; the EOI of that vector (EOI, called by a local APIC as a
// devices.EOIListener) clears Remote IRR and, if the pin is still
// asserted, sends the message again. Changing an entry to edge-triggered
// also clears its Remote IRR (Linux uses that on IOAPICs older than
// version 0x20, which lack the EOI register). Delivery Status always reads
// 0: a message is handed to the sink at once.
//
// An IOAPIC is safe for concurrent use: one mutex guards its state and is
// held while it calls the sink, so the sink must not call back into the
// same IOAPIC synchronously (a lapic.Router does not: LAPICs call their
// EOI listeners after releasing their own locks).
//
// Save/Restore (magic "IOAP", version 1), fields in order:
//
//	ioregsel u8
//	id       u8              IOAPICID bits 27:24
//	entries  24 × u64        redirection entries (Remote IRR and
//	                         Delivery Status included)
//	levels   u32             raw input level of each pin (bit n = pin n)
//	latched  u32             edge entries' pending rising edges
package ioapic

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Register window offsets from the MMIO base (82093AA §3.1).
const (
	IOREGSEL = 0x00
	IOWIN    = 0x10
)

// Indirect register indices (82093AA §3.2).
const (
	IOAPICID  = 0x00
	IOAPICVER = 0x01
	IOAPICARB = 0x02
	IOREDTBL  = 0x10 // entry n: low half at 0x10+2n, high half at 0x11+2n
)

// DefaultBase is the conventional guest-physical MMIO base.
const DefaultBase = 0xFEC00000

// NumPins is the number of input pins and redirection entries.
const NumPins = 24

// Version is the IOAPICVER version field: 0x11, the 82093AA's.
const Version = 0x11

// Redirection entry bits (82093AA §3.2.4).
const (
	EntryVector       = 0xFF     // bits 7:0
	EntryDeliveryMode = 0x7 << 8 // bits 10:8
	EntryDestLogical  = 1 << 11  // destination mode
	EntryDeliveryBusy = 1 << 12  // delivery status (read-only)
	EntryActiveLow    = 1 << 13  // input polarity: stored, not applied (see the package doc)
	EntryRemoteIRR    = 1 << 14  // read-only
	EntryLevel        = 1 << 15  // trigger mode
	EntryMasked       = 1 << 16  // interrupt mask
	entryDestShift    = 56       // destination field, bits 63:56
	entryReadOnly     = EntryDeliveryBusy | EntryRemoteIRR
	entryWritable     = 0xFF000000_0001AFFF // all but reserved and read-only bits
)

// IOAPIC is one I/O APIC.
type IOAPIC struct {
	sink devices.MessageSink

	mu       sync.Mutex
	ioregsel uint8
	id       uint8
	entries  [NumPins]uint64
	levels   uint32 // raw pin levels
	latched  uint32 // rising edges of edge entries not yet sent
}

// New returns an IOAPIC with the given ID that delivers through sink. All
// entries start masked, as after reset.
func New(id uint8, sink devices.MessageSink) *IOAPIC {
	a := &IOAPIC{sink: sink, id: id & 0xF}
	for i := range a.entries {
		a.entries[i] = EntryMasked
	}
	return a
}

// pin is the devices.Line of one input.
type pin struct {
	a *IOAPIC
	n int
}

func (p pin) Set(high bool) { p.a.setPin(p.n, high) }

// Pin returns the line of input n (0 ≤ n < NumPins): the GSI n of a
// machine whose MADT gives this IOAPIC GSI base 0.
func (a *IOAPIC) Pin(n int) devices.Line {
	if n < 0 || n >= NumPins {
		panic(fmt.Sprintf("ioapic: pin %d out of range", n)) // programming error
	}
	return pin{a, n}
}

// asserted reports whether pin n requests an interrupt.
func (a *IOAPIC) asserted(n int) bool { return a.levels&(1<<n) != 0 }

func (a *IOAPIC) setPin(n int, high bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.asserted(n)
	if high {
		a.levels |= 1 << n
	} else {
		a.levels &^= 1 << n
	}
	if a.asserted(n) && !was && a.entries[n]&EntryLevel == 0 {
		a.latched |= 1 << n
	}
	a.service(n)
}

// service sends pin n's message if it is due.
func (a *IOAPIC) service(n int) {
	e := a.entries[n]
	if e&EntryMasked != 0 {
		return
	}
	if e&EntryLevel != 0 {
		if !a.asserted(n) || e&EntryRemoteIRR != 0 {
			return
		}
		a.entries[n] |= EntryRemoteIRR
	} else {
		if a.latched&(1<<n) == 0 {
			return
		}
		a.latched &^= 1 << n
	}
	a.sink.Deliver(message(e))
}

// message is the interrupt message of redirection entry e.
func message(e uint64) devices.Message {
	return devices.Message{
		Dest:        uint32(e >> entryDestShift),
		DestLogical: e&EntryDestLogical != 0,
		Vector:      uint8(e & EntryVector),
		Mode:        devices.DeliveryMode(e & EntryDeliveryMode >> 8),
		Level:       e&EntryLevel != 0,
	}
}

// EOI clears Remote IRR of the level-triggered entries with this vector
// and re-sends those whose pin is still asserted (devices.EOIListener).
func (a *IOAPIC) EOI(vector uint8) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for n, e := range a.entries {
		if e&EntryLevel != 0 && e&EntryRemoteIRR != 0 && uint8(e&EntryVector) == vector {
			a.entries[n] &^= EntryRemoteIRR
			a.service(n)
		}
	}
}

// MMIORead reads IOREGSEL or IOWIN; other offsets read as zero. Accesses
// narrower than 4 bytes read part of the register.
func (a *IOAPIC) MMIORead(offset uint64, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var v uint32
	switch offset &^ 3 {
	case IOREGSEL:
		v = uint32(a.ioregsel)
	case IOWIN:
		v = a.readReg(a.ioregsel)
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], v>>(8*(offset&3)))
	copy(data, b[:])
}

// MMIOWrite writes IOREGSEL or IOWIN with a 4-byte access; other writes
// are ignored (the 82093AA supports only 32-bit accesses).
func (a *IOAPIC) MMIOWrite(offset uint64, data []byte) {
	if len(data) != 4 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch offset {
	case IOREGSEL:
		a.ioregsel = uint8(v)
	case IOWIN:
		a.writeReg(a.ioregsel, v)
	}
}

func (a *IOAPIC) readReg(reg uint8) uint32 {
	switch {
	case reg == IOAPICID:
		return uint32(a.id) << 24
	case reg == IOAPICVER:
		return (NumPins-1)<<16 | Version
	case reg == IOAPICARB:
		return uint32(a.id) << 24 // the arbitration ID follows the ID
	case reg >= IOREDTBL && reg < IOREDTBL+2*NumPins:
		e := a.entries[(reg-IOREDTBL)/2]
		if reg&1 == 1 {
			return uint32(e >> 32)
		}
		return uint32(e)
	}
	return 0
}

func (a *IOAPIC) writeReg(reg uint8, v uint32) {
	switch {
	case reg == IOAPICID:
		a.id = uint8(v>>24) & 0xF
	case reg >= IOREDTBL && reg < IOREDTBL+2*NumPins:
		n := int(reg-IOREDTBL) / 2
		e := a.entries[n]
		if reg&1 == 1 {
			e = e&0xFFFFFFFF | uint64(v)<<32
		} else {
			e = e&^0xFFFFFFFF | uint64(v)
		}
		e = e&entryWritable | a.entries[n]&entryReadOnly
		if e&EntryLevel == 0 {
			e &^= EntryRemoteIRR
		} else {
			a.latched &^= 1 << n // an edge latched under the old mode is dropped
		}
		a.entries[n] = e
		a.service(n)
	}
}

const (
	stateMagic   = "IOAP"
	stateVersion = 1
)

// Save returns the IOAPIC's state (see the package doc for the layout).
func (a *IOAPIC) Save() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.U8(a.ioregsel)
	e.U8(a.id)
	for _, r := range a.entries {
		e.U64(r)
	}
	e.U32(a.levels)
	e.U32(a.latched)
	return e.Finish(), nil
}

// Restore puts back a state from Save. It sends no message: a pending
// level interrupt was sent before the save (Remote IRR is set) and a
// latched edge waits for its entry to be unmasked.
func (a *IOAPIC) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	ioregsel := d.U8()
	id := d.U8()
	d.Check(id < 16, "ioapic: id %d", id)
	var entries [NumPins]uint64
	for i := range entries {
		entries[i] = d.U64()
		d.Check(entries[i]&^(entryWritable|entryReadOnly) == 0, "ioapic: entry %d reserved bits %#x", i, entries[i])
	}
	levels := d.U32()
	latched := d.U32()
	d.Check(levels>>NumPins == 0 && latched>>NumPins == 0, "ioapic: pin bits beyond %d", NumPins)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("ioapic: restore: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ioregsel, a.id, a.entries, a.levels, a.latched = ioregsel, id, entries, levels, latched
	return nil
}
