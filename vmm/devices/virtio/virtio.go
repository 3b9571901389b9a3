// Package virtio holds what every virtio 1.x device model of doppel shares:
// the device status and reserved feature bits, the PCI transport's
// capability and common configuration layout, the guest memory the rings
// live in, and the split virtqueue as the device sees it.
//
// Reference: OASIS "Virtual I/O Device (VIRTIO) Version 1.1" (and 1.2,
// which keeps these layouts): 2.1 device status field, 2.2 feature bits,
// 2.6 split virtqueues (2.6.2 alignment: descriptor table 16, available
// ring 2, used ring 4; 2.6.5 descriptor table and VIRTQ_DESC_F_*, 2.6.6
// available ring, 2.6.8 used ring, 2.6.7 interrupt suppression), 4.1.4
// virtio structure PCI capabilities (4.1.4.3 common configuration, 4.1.4.4
// notification, 4.1.4.5 ISR status, 4.1.4.6 device-specific, 4.1.4.7 PCI
// configuration access), 6 reserved feature bits.
//
// Only what a modern (non-transitional) device with split rings, no
// indirect descriptors and no event index needs is here: those features
// are never offered, so a guest that uses them anyway is a faulty guest
// and its chain is refused (ErrGuest).
//
// Ring accesses follow the order the spec relies on (2.6.13, 2.6.8): the
// available index is read before the entries it covers, and used entries
// are written before the used index that publishes them. A GuestMemory
// over real guest RAM, which other vCPUs touch meanwhile, only has to
// complete each access before the next.
package virtio

import (
	"errors"
	"fmt"
)

// Device status bits (2.1): the spec's ACKNOWLEDGE, DRIVER, DRIVER_OK,
// FEATURES_OK, DEVICE_NEEDS_RESET and FAILED (VIRTIO_CONFIG_S_* in Linux).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Reserved feature bits (6), as bit numbers: VIRTIO_F_INDIRECT_DESC,
// VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM,
// VIRTIO_F_RING_PACKED, VIRTIO_F_IN_ORDER.
const (
	FRingIndirectDesc = 28
	FRingEventIdx     = 29
	FVersion1         = 32
	FAccessPlatform   = 33
	FRingPacked       = 34
	FInOrder          = 35
)

// PCI transport (4.1.2, 4.1.4).
const (
	PCIVendorID     = 0x1AF4
	PCIDeviceIDBase = 0x1040 // plus the virtio device ID, for modern devices
	// PCIRevisionModern: "Non-transitional devices SHOULD have a PCI
	// Revision ID of 1 or higher" (4.1.2.1).
	PCIRevisionModern = 1
	// PCISubsysID: non-transitional devices SHOULD have a subsystem
	// device ID of 0x40 or higher (4.1.2.1); 0x1100 under vendor 0x1AF4
	// is the one QEMU gives its emulated devices.
	PCISubsysVendorID = 0x1AF4
	PCISubsysID       = 0x1100

	CapVendor = 0x09 // PCI capability ID "vendor specific"

	// cfg_type of struct virtio_pci_cap: VIRTIO_PCI_CAP_COMMON_CFG,
	// _NOTIFY_CFG, _ISR_CFG, _DEVICE_CFG, _PCI_CFG.
	PCICapCommonCfg = 1
	PCICapNotifyCfg = 2
	PCICapISRCfg    = 3
	PCICapDeviceCfg = 4
	PCICapPCICfg    = 5

	// cap_len: struct virtio_pci_cap is 16 bytes; the notify capability
	// adds notify_off_multiplier, the PCI access one pci_cfg_data.
	PCICapLen       = 16
	PCINotifyCapLen = 20
	PCICfgCapLen    = 20

	// MSINoVector is VIRTIO_MSI_NO_VECTOR: what msix_config and
	// queue_msix_vector read when no MSI-X vector is mapped, as always
	// on a device without MSI-X.
	MSINoVector = 0xFFFF
)

// ISR status bits (4.1.4.5): queue interrupt, device configuration
// interrupt (VIRTIO_PCI_ISR_QUEUE, VIRTIO_PCI_ISR_CONFIG in Linux).
const (
	ISRQueue  = 1 << 0
	ISRConfig = 1 << 1
)

// Common configuration structure offsets (struct virtio_pci_common_cfg,
// 4.1.4.3).
const (
	CommonDeviceFeatureSelect = 0x00 // le32 RW
	CommonDeviceFeature       = 0x04 // le32 RO
	CommonDriverFeatureSelect = 0x08 // le32 RW
	CommonDriverFeature       = 0x0C // le32 RW
	CommonMSIXConfig          = 0x10 // le16 RW
	CommonNumQueues           = 0x12 // le16 RO
	CommonDeviceStatus        = 0x14 // u8 RW
	CommonConfigGeneration    = 0x15 // u8 RO
	CommonQueueSelect         = 0x16 // le16 RW
	CommonQueueSize           = 0x18 // le16 RW
	CommonQueueMSIXVector     = 0x1A // le16 RW
	CommonQueueEnable         = 0x1C // le16 RW
	CommonQueueNotifyOff      = 0x1E // le16 RO
	CommonQueueDesc           = 0x20 // le64 RW
	CommonQueueDriver         = 0x28 // le64 RW
	CommonQueueDevice         = 0x30 // le64 RW
	CommonCfgLen              = 0x38
)

// Descriptor flags (2.6.5): VIRTQ_DESC_F_NEXT, _WRITE, _INDIRECT; ring
// flags: VIRTQ_AVAIL_F_NO_INTERRUPT (2.6.6), VIRTQ_USED_F_NO_NOTIFY
// (2.6.8); sizes of a descriptor and a used element.
const (
	DescFNext                        = 1
	DescFWrite                       = 2
	DescFIndirect                    = 4
	AvailFNoInterrupt                = 1
	UsedFNoNotify                    = 1
	descSize                         = 16
	usedElemSize                     = 8
	alignDesc, alignAvail, alignUsed = 16, 2, 4
	// MaxQueueSize is the largest split queue (2.6: "Queue Size ...
	// maximum 32768").
	MaxQueueSize = 32768
)

// ErrGuest is wrapped by every error a faulty guest causes: a bad ring
// address, a descriptor loop, a chain over its limit. The device answers
// it by setting DEVICE_NEEDS_RESET (2.1.1), never by panicking.
var ErrGuest = errors.New("virtio: faulty guest")

// ErrMemory is wrapped by GuestMemory errors: an access outside guest RAM.
var ErrMemory = errors.New("virtio: guest address out of range")

// GuestMemory is guest-physical memory as a device reaches it by DMA.
// ReadAt fills p from gpa, WriteAt copies p to gpa; either fails (with an
// error wrapping ErrMemory) when any byte is outside guest RAM, and then
// has copied nothing.
type GuestMemory interface {
	ReadAt(p []byte, gpa uint64) error
	WriteAt(p []byte, gpa uint64) error
}

// ByteMemory is GuestMemory over a byte slice starting at guest-physical
// address 0: for host tests and tools.
type ByteMemory []byte

func (m ByteMemory) span(n int, gpa uint64) (int, error) {
	if gpa > uint64(len(m)) || uint64(n) > uint64(len(m))-gpa {
		return 0, fmt.Errorf("%w: %d bytes at %#x, RAM is %#x bytes", ErrMemory, n, gpa, len(m))
	}
	return int(gpa), nil
}

// ReadAt implements GuestMemory.
func (m ByteMemory) ReadAt(p []byte, gpa uint64) error {
	o, err := m.span(len(p), gpa)
	if err != nil {
		return err
	}
	copy(p, m[o:])
	return nil
}

// WriteAt implements GuestMemory.
func (m ByteMemory) WriteAt(p []byte, gpa uint64) error {
	o, err := m.span(len(p), gpa)
	if err != nil {
		return err
	}
	copy(m[o:], p)
	return nil
}
