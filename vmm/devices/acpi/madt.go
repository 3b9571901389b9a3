package acpi

import "encoding/binary"

// MADT (ACPI 6.5 §5.2.12), revision 4: the LAPIC address, PCAT_COMPAT,
// one Processor Local APIC per vCPU, the IOAPIC at GSI base 0, interrupt
// source overrides, and LINT1 as NMI on every processor.
const madtRevision = 4

// MADT flags and entry types (Tables 5.19, 5.20).
const (
	MADTPCATCompat        = 1 << 0
	madtLocalAPIC         = 0
	madtIOAPIC            = 1
	madtInterruptOverride = 2
	madtLocalAPICNMI      = 4
	madtLocalAPICEnabled  = 1 << 0
	// MPS INTI flags (Table 5.26): polarity bits 1:0, trigger bits 3:2.
	intiActiveHigh = 1 << 0
	intiLevel      = 3 << 2
	intiConforming = 0
)

// buildMADT returns the MADT body (after the header).
func buildMADT(c *Config) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, c.LAPICAddr)
	flags := uint32(0)
	if c.PIC {
		flags |= MADTPCATCompat
	}
	b = le.AppendUint32(b, flags)
	for i := 0; i < c.NumCPUs; i++ {
		b = append(b, madtLocalAPIC, 8, byte(i), byte(i))
		b = le.AppendUint32(b, madtLocalAPICEnabled)
	}
	b = append(b, madtIOAPIC, 12, c.IOAPICID, 0)
	b = le.AppendUint32(b, c.IOAPICAddr)
	b = le.AppendUint32(b, 0) // GSI base
	override := func(irq uint8, gsi uint32, flags uint16) {
		b = append(b, madtInterruptOverride, 10, 0, irq) // bus 0: ISA
		b = le.AppendUint32(b, gsi)
		b = le.AppendUint16(b, flags)
	}
	if c.PIT {
		override(0, 2, intiConforming)
	}
	if c.SCI != 0 {
		override(c.SCI, uint32(c.SCI), intiLevel|intiActiveHigh)
	}
	b = append(b, madtLocalAPICNMI, 6, 0xFF, 0, 0, 1) // all processors, LINT1
	return b
}
