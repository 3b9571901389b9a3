package lapic

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// MSI address and data encodings (SDM Vol. 3A 11.11.1, 11.11.2): a
// device's MSI or MSI-X write to 0xFEExxxxx is an interrupt message.
const (
	MSIAddrBase      = 0xFEE00000
	MSIAddrBaseMask  = 0xFFF00000 // bits 31:20 are 0xFEE
	MSIAddrDestShift = 12         // destination ID, bits 19:12
	MSIAddrDestMode  = 1 << 2     // 1: logical destination
	MSIDataVector    = 0xFF
	MSIDataDelivery  = 0x7 << 8
	MSIDataLevel     = 1 << 15 // trigger mode: level
)

// MSI decodes a device's MSI write of data to guest-physical address addr
// into the message to hand to the Router. A write outside the 0xFEExxxxx
// window is an error (the device wrote to memory, not an interrupt).
func MSI(addr uint64, data uint32) (devices.Message, error) {
	if addr>>32 != 0 || uint32(addr)&MSIAddrBaseMask != MSIAddrBase {
		return devices.Message{}, fmt.Errorf("lapic: MSI address %#x outside 0xFEExxxxx", addr)
	}
	return devices.Message{
		Dest:        uint32(addr>>MSIAddrDestShift) & 0xFF,
		DestLogical: addr&MSIAddrDestMode != 0,
		Vector:      uint8(data & MSIDataVector),
		Mode:        devices.DeliveryMode(data & MSIDataDelivery >> 8),
		Level:       data&MSIDataLevel != 0,
	}, nil
}
