package acpi

// The DSDT body: \_S5 for power-off, and optionally \_SB.COM1 and
// \_SB.PCI0 (ACPI 6.5 §7.4.2 for \_Sx, §6.1.5 _HID, §6.2.2 _CRS, §6.2.13
// _PRT).

// PCI INTx routing: device slot s, pin p (0 = INTA) is wired to IOAPIC
// pin PCIIRQBase + (s+p)%8, the usual swizzle over the 8 pins above the
// ISA range. The _PRT says so; Linux programs those entries level-
// triggered, active-low.
const PCIIRQBase = 16

// PCIIRQ returns the GSI (IOAPIC pin) of PCI device slot's INTx pin
// (0 = INTA .. 3 = INTD).
func PCIIRQ(slot, pin int) uint32 { return PCIIRQBase + uint32((slot+pin)%8) }

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
	for slot := 0; slot < 32; slot++ {
		for pin := 0; pin < 4; pin++ {
			prt = append(prt, amlPackage(
				amlDWord(uint32(slot)<<16|0xFFFF), // any function of the slot
				amlInt(uint64(pin)),
				amlInt(0), // no link device: the next field is a GSI
				amlInt(uint64(PCIIRQ(slot, pin))),
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
