package acpi

import "encoding/binary"

// FADT (ACPI 6.5 §5.2.9, Table 5.9), revision 6, 276 bytes. It is a
// hardware-reduced FADT: no PM1/GPE blocks, no FACS (ACPICA sets no FACS
// when HW_REDUCED_ACPI is set), sleep through the sleep control and
// status registers, reset through the reset register.
const (
	fadtRevision     = 6
	fadtMinorVersion = 0
	fadtLength       = 276
)

// FADT field offsets from the start of the table (header included).
const (
	fadtFirmwareCtrl      = 36
	fadtDSDT              = 40
	fadtSCIInt            = 46
	fadtIAPCBootArch      = 109
	fadtFlags             = 112
	fadtResetReg          = 116
	fadtResetValue        = 128
	fadtMinorVersionOff   = 131
	fadtXDSDT             = 140
	fadtSleepControlReg   = 244
	fadtSleepStatusReg    = 256
	fadtHypervisorVendor  = 268
	fadtBodyStart         = headerLength
	genericAddressLength  = 12
	addressSpaceSystemIO  = 1
	accessSizeByte        = 1
	hypervisorVendorValue = "DOPPEL"
)

// IAPC_BOOT_ARCH flags (Table 5.11).
const (
	BootArchLegacyDevices     = 1 << 0
	BootArch8042              = 1 << 1
	BootArchVGANotPresent     = 1 << 2
	BootArchMSINotSupported   = 1 << 3
	BootArchCMOSRTCNotPresent = 1 << 5
)

// FADT flags (Table 5.10).
const (
	FlagWBINVD        = 1 << 0
	FlagPowerButton   = 1 << 4 // no fixed-feature power button
	FlagSleepButton   = 1 << 5 // no fixed-feature sleep button
	FlagResetRegSup   = 1 << 10
	FlagHWReducedACPI = 1 << 20
)

// Sleep control and status register bits (ACPI 6.5 §4.8.3.7, §4.8.3.8).
const (
	SleepTypeShift = 2
	SleepTypeMask  = 0x7 << SleepTypeShift
	SleepEnable    = 1 << 5
	WakeStatus     = 1 << 7
)

// gas encodes a Generic Address Structure (§5.2.3.2) of one byte in I/O
// space.
func gasIOByte(port uint16) []byte {
	b := []byte{addressSpaceSystemIO, 8, 0, accessSizeByte}
	return binary.LittleEndian.AppendUint64(b, uint64(port))
}

// buildFADT returns the FADT body (after the header).
func buildFADT(c *Config, dsdt uint64) []byte {
	t := make([]byte, fadtLength)
	le := binary.LittleEndian
	le.PutUint32(t[fadtDSDT:], uint32(dsdt))
	le.PutUint16(t[fadtSCIInt:], uint16(c.SCI))
	arch := uint16(BootArchVGANotPresent)
	if c.I8042 {
		arch |= BootArch8042
	}
	if !c.RTC {
		arch |= BootArchCMOSRTCNotPresent
	}
	le.PutUint16(t[fadtIAPCBootArch:], arch)
	le.PutUint32(t[fadtFlags:], FlagWBINVD|FlagPowerButton|FlagSleepButton|FlagResetRegSup|FlagHWReducedACPI)
	copy(t[fadtResetReg:], gasIOByte(c.ResetPort))
	t[fadtResetValue] = c.ResetValue
	t[fadtMinorVersionOff] = fadtMinorVersion
	le.PutUint64(t[fadtXDSDT:], dsdt)
	copy(t[fadtSleepControlReg:], gasIOByte(c.SleepPort))
	copy(t[fadtSleepStatusReg:], gasIOByte(c.SleepPort+1))
	copy(t[fadtHypervisorVendor:], hypervisorVendorValue)
	return t[headerLength:]
}
