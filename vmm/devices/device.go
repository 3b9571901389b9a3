package devices

// Line is one interrupt line, driven by its source's level.
type Line interface {
	Set(high bool)
}

// LineFunc adapts a function to a Line.
type LineFunc func(high bool)

// Set calls f(high).
func (f LineFunc) Set(high bool) { f(high) }

// NoLine is a Line connected to nothing.
var NoLine Line = LineFunc(func(bool) {})

// PortDevice is a device on the guest's I/O port bus (the method set of
// vmm.PortDevice). size is 1, 2 or 4; offset is from the mapped base.
type PortDevice interface {
	PortIn(offset uint16, size int) uint32
	PortOut(offset uint16, size int, value uint32)
}

// MMIODevice is a device on the guest's MMIO bus. len(data) is 1, 2, 4 or
// 8; offset is from the mapped base; data is little-endian.
type MMIODevice interface {
	MMIORead(offset uint64, data []byte)
	MMIOWrite(offset uint64, data []byte)
}

// Snapshotter saves and restores a device's guest-visible state.
type Snapshotter interface {
	Save() ([]byte, error)
	Restore(state []byte) error
}

// Clock gives the guest's time in nanoseconds since the machine started.
// It is monotonic; a restored machine's clock continues from the saved one.
type Clock interface {
	Nanotime() int64
}

// Timer is a device with time-driven events.
type Timer interface {
	// NextDeadline returns the guest time of the device's next event, and
	// false when none is armed.
	NextDeadline() (int64, bool)
	// Poll brings the device's state up to now (raising lines as due).
	Poll(now int64)
}

// DeliveryMode is the delivery mode of an interrupt message (SDM Vol. 3A
// 11.6.1, the ICR and IOAPIC redirection entry encodings).
type DeliveryMode uint8

// Delivery modes.
const (
	DeliveryFixed          DeliveryMode = 0
	DeliveryLowestPriority DeliveryMode = 1
	DeliverySMI            DeliveryMode = 2
	DeliveryNMI            DeliveryMode = 4
	DeliveryINIT           DeliveryMode = 5
	DeliveryStartup        DeliveryMode = 6
	DeliveryExtINT         DeliveryMode = 7
)

// Message is an interrupt sent to local APICs: by the IOAPIC from a
// redirection entry, by a device as MSI, or by a LAPIC as an IPI.
type Message struct {
	Dest        uint32 // APIC ID (physical) or logical destination
	DestLogical bool
	Vector      uint8
	Mode        DeliveryMode
	Level       bool // level-triggered: the sender wants an EOI back
	// Shorthand for IPIs: 0 none, 1 self, 2 all including self, 3 all
	// excluding self (ICR bits 19:18).
	Shorthand uint8
	Source    uint32 // sending APIC ID, for shorthand "excluding self"
}

// MessageSink delivers interrupt messages to the local APICs.
type MessageSink interface {
	Deliver(m Message)
}

// EOIListener is told of the EOI of a level-triggered vector.
type EOIListener interface {
	EOI(vector uint8)
}
