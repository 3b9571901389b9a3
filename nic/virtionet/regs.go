// Package virtionet drives a modern virtio network device over PCI
// (QEMU's virtio-net-pci with disable-legacy=on, and the virtio NICs of
// clouds), following "Virtual I/O Device (VIRTIO) Version 1.2" (section
// numbers below are that specification's): the PCI transport's
// capabilities (4.1.4), device initialization (3.1.1), feature bits
// VERSION_1, MAC, STATUS and MTU (5.1.3, 6), split virtqueues (2.7) and the
// network header (5.1.6).
//
// Ring and buffer memory comes from the DMA allocator (nic/dma); the
// interrupt goroutine takes INTx (ISR status read, 4.1.4.5), moves
// received frames to a bounded queue (full: dropped, counted), reclaims
// transmit descriptors and signals TxReady. An MTU above 1500
// (Config.MTU) is used only if the device offers VIRTIO_NET_F_MTU
// (QEMU's host_mtu), up to its mtu; each receive buffer holds a whole
// frame (no mergeable buffers).
package virtionet

// PCI IDs (4.1.2.1): modern virtio devices are 0x1040 + device type;
// the network device is type 1. 0x1000 is the transitional ID.
const (
	VendorVirtio       = 0x1AF4
	DeviceNetModern    = 0x1041
	DeviceNetTransit   = 0x1000
	pciCapVendor       = 0x09
	subsystemNetLegacy = 1
)

// Virtio PCI capability types (4.1.4, cfg_type).
const (
	CapCommonCfg = 1
	CapNotifyCfg = 2
	CapISRCfg    = 3
	CapDeviceCfg = 4
	CapPCICfg    = 5
)

// Common configuration structure offsets (4.1.4.3).
const (
	DeviceFeatureSelect = 0x00
	DeviceFeature       = 0x04
	DriverFeatureSelect = 0x08
	DriverFeature       = 0x0C
	MSIXConfig          = 0x10
	NumQueues           = 0x12
	DeviceStatus        = 0x14
	ConfigGeneration    = 0x15
	QueueSelect         = 0x16
	QueueSize           = 0x18
	QueueMSIXVector     = 0x1A
	QueueEnable         = 0x1C
	QueueNotifyOff      = 0x1E
	QueueDesc           = 0x20
	QueueDriver         = 0x28
	QueueDevice         = 0x30
)

// Device status bits (2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Feature bits (5.1.3 for the network device, 6 reserved bits).
const (
	FeatureNetMTU    = 3 // the device reports its maximum MTU in the config
	FeatureNetMAC    = 5
	FeatureNetMrgRx  = 15
	FeatureNetStatus = 16
	FeatureVersion1  = 32
)

// Network device configuration (5.1.4).
const (
	NetConfigMAC    = 0
	NetConfigStatus = 6
	NetConfigMTU    = 10 // after max_virtqueue_pairs; with VIRTIO_NET_F_MTU
	NetStatusLinkUp = 1
)

// ISR status bits (4.1.4.5).
const (
	ISRQueue  = 1
	ISRConfig = 2
)

// Virtqueue descriptor flags (2.7.5) and ring flags (2.7.6, 2.7.8).
const (
	DescFNext         = 1
	DescFWrite        = 2
	UsedFNoNotify     = 1
	AvailFNoInterrupt = 1
)

// Queue indexes of the network device (5.1.2).
const (
	rxQueue = 0
	txQueue = 1
)

// netHdrLen is struct virtio_net_hdr with num_buffers, always present
// once VERSION_1 is negotiated (5.1.6).
const netHdrLen = 12

// noVector is VIRTIO_MSI_NO_VECTOR: the device interrupts by INTx.
const noVector = 0xFFFF
