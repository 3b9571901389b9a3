package acpi

import "github.com/doppel-ft/doppel/vmm/devices/pci"

// The DSDT body: \_S5 for power-off, and optionally \_SB.COM1 and
// \_SB.PCI0 (ACPI 6.5 §7.4.2 for \_Sx, §6.1.5 _HID, §6.2.2 _CRS, §6.2.13
// _PRT).

// PCI INTx routing: the pci package's bus ORs every function's INTx onto
// four PIRQ lines A-D by the usual swizzle (pci.Swizzle); the machine
// wires PIRQ A-D to IOAPIC pins PCIIRQBase..PCIIRQBase+3. The _PRT tells
// the guest the same, with no link devices, so Linux programs those
// entries level-triggered (and active-low, which the IOAPIC model stores
// but does not apply: PIRQ lines are raised with Set(true)).
const PCIIRQBase = 16

// PCIIRQ returns the GSI (IOAPIC pin) of PCI device's INTx pin, pin as in
// the Interrupt Pin register: 1 = INTA# .. 4 = INTD#.
func PCIIRQ(device, pin int) uint32 { return PCIIRQBase + uint32(pci.Swizzle(device, pin)) }

func buildDSDT(c *Config) []byte {
	// Package(){SLP_TYPa, SLP_TYPb, reserved, reserved}: only SLP_TYPa is
	// used with the sleep control register.
	body := amlName(`\_S5`, amlPackage(amlInt(S5SleepType), amlInt(0), amlInt(0), amlInt(0)))
	var devs [][]byte
	if c.COM1 {
		devs = append(devs, amlDevice("COM1",
			amlName("_HID", amlDWord(eisaID("PNP0501"))),
			amlName("_UID", amlInt(1)),
			amlName("_CRS", amlBuffer(concat(resIO(0x3F8, 0x3F8, 1, 8), resIRQ(4), resEnd))),
		))
	}
	if c.PCI != nil {
		devs = append(devs, pciHostBridge(c.PCI))
	}
	if len(devs) > 0 {
		body = append(body, amlScope(`\_SB`, devs...)...)
	}
	return body
}

func pciHostBridge(p *PCIConfig) []byte {
	crs := concat(
		resWordAddr(resTypeBus, 0, 0, 0xFF),
		resIO(0xCF8, 0xCF8, 1, 8),
		resWordAddr(resTypeIO, resIOEntireRange, 0, 0xCF7),
		resWordAddr(resTypeIO, resIOEntireRange, 0xD00, 0xFFFF),
		resDWordAddr(resTypeMemory, resMemReadWrite, p.MMIOBase, p.MMIOBase+p.MMIOSize-1),
		resEnd,
	)
	var prt [][]byte
	for dev := 0; dev < pci.NumDevices; dev++ {
		for pin := 1; pin <= 4; pin++ {
			prt = append(prt, amlPackage(
				amlDWord(uint32(dev)<<16|0xFFFF), // any function of the device
				amlInt(uint64(pin-1)),            // _PRT pins count from 0 = INTA#
				amlInt(0),                        // no link device: the next field is a GSI
				amlInt(uint64(PCIIRQ(dev, pin))),
			))
		}
	}
	return amlDevice("PCI0",
		amlName("_HID", amlDWord(eisaID("PNP0A03"))),
		amlName("_UID", amlInt(0)),
		amlName("_SEG", amlInt(0)),
		amlName("_BBN", amlInt(0)),
		amlName("_CRS", amlBuffer(crs)),
		amlName("_PRT", amlPackage(prt...)),
	)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
