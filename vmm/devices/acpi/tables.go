package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Config describes the machine the tables tell the guest about.
type Config struct {
	// NumCPUs is the number of vCPUs, 1-254; their APIC IDs and ACPI
	// processor UIDs are 0..NumCPUs-1.
	NumCPUs int
	// LAPICAddr and IOAPICAddr are the MMIO bases; 0 means 0xFEE00000 and
	// 0xFEC00000. IOAPICID is the IOAPIC's ID; 64-bit Linux does not
	// require it to differ from the APIC IDs.
	LAPICAddr  uint32
	IOAPICAddr uint32
	IOAPICID   uint8
	// PIC says an 8259 pair exists (MADT PCAT_COMPAT). With the FADT's
	// HW_REDUCED_ACPI flag Linux ignores it and the PIT anyway.
	PIC bool
	// PIT says an 8254 exists: the MADT then maps ISA IRQ 0 to GSI 2.
	PIT bool
	// SCI is the GSI of the system control interrupt, 0 for none (a
	// HW-reduced machine needs none). A non-zero SCI gets an interrupt
	// source override, level-triggered active-high, as QEMU's.
	SCI uint8
	// I8042 and RTC say a keyboard controller and a CMOS RTC exist (FADT
	// IAPC_BOOT_ARCH flags; Linux skips their probes otherwise).
	I8042 bool
	RTC   bool
	// COM1 adds a PNP0501 device at port 0x3F8, IRQ 4, to the DSDT: with
	// HW_REDUCED_ACPI Linux maps no ISA IRQs by itself, so this is how
	// the 8250 driver gets GSI 4 routed.
	COM1 bool
	// PCI adds a PCI host bridge (PNP0A03, bus 0-255, configuration ports
	// 0xCF8-0xCFF) with an INTx routing table; nil means no PCI. Linux
	// scans PCI under ACPI only below such a bridge.
	PCI *PCIConfig
	// SleepPort is the I/O port of the sleep control register; the sleep
	// status register is at SleepPort+1 (the Sleep device). 0 means
	// DefaultSleepPort.
	SleepPort uint16
	// ResetPort and ResetValue are the FADT reset register; 0 means
	// 0xCF9 and 0x06 (the PIIX/ICH reset control register, hard reset).
	ResetPort  uint16
	ResetValue uint8
}

// PCIConfig is the PCI host bridge's memory window for device BARs.
type PCIConfig struct {
	MMIOBase uint32
	MMIOSize uint32
}

// Defaults.
const (
	DefaultLAPICAddr  = 0xFEE00000
	DefaultIOAPICAddr = 0xFEC00000
	DefaultSleepPort  = 0x600
	DefaultResetPort  = 0xCF9
	DefaultResetValue = 0x06
	// S5SleepType is the SLP_TYP the DSDT's \_S5 gives (3 bits).
	S5SleepType = 5
	// MaxCPUs is the most vCPUs the tables describe: APIC IDs fit the
	// MADT's one-byte Processor Local APIC entries, and 0xFF is broadcast.
	MaxCPUs = 254
)

// OEM identity written into every table header.
const (
	oemID       = "DOPPEL"
	oemTableID  = "DOPPELVM"
	creatorID   = "DPPL"
	oemRevision = 1
)

// Tables is the ACPI table blob for guest memory.
type Tables struct {
	// Base is the guest-physical address Bytes must be copied to; every
	// pointer inside is absolute.
	Base  uint64
	Bytes []byte
	// RSDP is the guest-physical address of the RSDP (Base: it comes
	// first, 16-byte aligned).
	RSDP uint64
	// Offsets of each table inside Bytes, by signature (RSDP, XSDT, FACP,
	// APIC, DSDT), for tests and debugging.
	Offsets map[string]int
}

// ErrConfig is wrapped by Build's errors.
var ErrConfig = errors.New("acpi: bad table configuration")

func (c *Config) setDefaults() error {
	if c.NumCPUs < 1 || c.NumCPUs > MaxCPUs {
		return fmt.Errorf("%w: %d CPUs, want 1-%d", ErrConfig, c.NumCPUs, MaxCPUs)
	}
	if c.LAPICAddr == 0 {
		c.LAPICAddr = DefaultLAPICAddr
	}
	if c.IOAPICAddr == 0 {
		c.IOAPICAddr = DefaultIOAPICAddr
	}
	if c.SleepPort == 0 {
		c.SleepPort = DefaultSleepPort
	}
	if c.ResetPort == 0 {
		c.ResetPort, c.ResetValue = DefaultResetPort, DefaultResetValue
	}
	if c.SCI >= 24 {
		return fmt.Errorf("%w: SCI GSI %d beyond the IOAPIC's 24 pins", ErrConfig, c.SCI)
	}
	if p := c.PCI; p != nil && (p.MMIOSize == 0 || uint64(p.MMIOBase)+uint64(p.MMIOSize) > 1<<32) {
		return fmt.Errorf("%w: PCI window %#x+%#x", ErrConfig, p.MMIOBase, p.MMIOSize)
	}
	return nil
}

// Build lays out RSDP, XSDT, FADT, MADT and DSDT for guest-physical
// address base, which must be 16-byte aligned and leave the blob below
// 4 GiB (the FADT's 32-bit DSDT pointer and the RSDP scan need that).
func Build(c Config, base uint64) (*Tables, error) {
	if err := c.setDefaults(); err != nil {
		return nil, err
	}
	if base%16 != 0 {
		return nil, fmt.Errorf("%w: base %#x not 16-byte aligned", ErrConfig, base)
	}
	t := &Tables{Base: base, RSDP: base, Offsets: map[string]int{}}
	dsdt := table("DSDT", 2, buildDSDT(&c))
	madt := table("APIC", madtRevision, buildMADT(&c))
	// Layout: RSDP, XSDT (two entries), FADT, MADT, DSDT, each 16-aligned.
	off := map[string]int{"RSDP": 0}
	pos := align16(rsdpLength)
	off["XSDT"] = pos
	pos = align16(pos + headerLength + 2*8)
	off["FACP"] = pos
	pos = align16(pos + fadtLength)
	off["APIC"] = pos
	pos = align16(pos + len(madt))
	off["DSDT"] = pos
	pos += len(dsdt)
	if base+uint64(pos) > 1<<32 {
		return nil, fmt.Errorf("%w: tables at %#x end above 4 GiB", ErrConfig, base)
	}
	addr := func(sig string) uint64 { return base + uint64(off[sig]) }

	b := make([]byte, pos)
	copy(b[off["RSDP"]:], buildRSDP(addr("XSDT")))
	xsdt := binary.LittleEndian.AppendUint64(nil, addr("FACP"))
	xsdt = binary.LittleEndian.AppendUint64(xsdt, addr("APIC"))
	copy(b[off["XSDT"]:], table("XSDT", 1, xsdt))
	copy(b[off["FACP"]:], table("FACP", fadtRevision, buildFADT(&c, addr("DSDT"))))
	copy(b[off["APIC"]:], madt)
	copy(b[off["DSDT"]:], dsdt)
	t.Bytes, t.Offsets = b, off
	return t, nil
}

func align16(n int) int { return (n + 15) &^ 15 }

// System description table header (ACPI 6.5 §5.2.6).
const headerLength = 36

// table prepends the header to body and sets the checksum.
func table(sig string, revision uint8, body []byte) []byte {
	b := make([]byte, headerLength, headerLength+len(body))
	copy(b[0:4], sig)
	binary.LittleEndian.PutUint32(b[4:], uint32(headerLength+len(body)))
	b[8] = revision
	copy(b[10:16], oemID)
	copy(b[16:24], oemTableID)
	binary.LittleEndian.PutUint32(b[24:], oemRevision)
	copy(b[28:32], creatorID)
	binary.LittleEndian.PutUint32(b[32:], 1)
	b = append(b, body...)
	b[9] = -checksum(b)
	return b
}

// checksum is the byte sum of b; a valid table sums to zero.
func checksum(b []byte) uint8 {
	var s uint8
	for _, x := range b {
		s += x
	}
	return s
}

// RSDP (ACPI 6.5 §5.2.5.3), revision 2: the XSDT only (RSDT address 0).
const rsdpLength = 36

func buildRSDP(xsdt uint64) []byte {
	b := make([]byte, rsdpLength)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = 2
	binary.LittleEndian.PutUint32(b[20:], rsdpLength)
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = -checksum(b[:20])
	b[32] = -checksum(b)
	return b
}
