package virtionet

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// Network device identity (5.1.1) and PCI class (network controller,
// Ethernet: PCI code and ID assignment 3.0, class 02h subclass 00h).
const (
	DeviceIDNet = 1
	PCIDeviceID = virtio.PCIDeviceIDBase + DeviceIDNet
	ClassNet    = 0x020000
)

// Feature bits of the network device (5.1.3): VIRTIO_NET_F_MAC,
// VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS.
const (
	FMAC         = 5
	FMrgRxBuf    = 15
	FStatus      = 16
	StatusLinkUp = 1 // VIRTIO_NET_S_LINK_UP in struct virtio_net_config.status
)

// Queues (5.1.2): receiveq1, transmitq1; no control queue (not offered).
const (
	RxQueue   = 0
	TxQueue   = 1
	numQueues = 2
)

// struct virtio_net_hdr (5.1.6): flags u8, gso_type u8, hdr_len,
// gso_size, csum_start, csum_offset, num_buffers (le16 each). With
// VERSION_1 it is always 12 bytes.
const (
	NetHdrLen        = 12
	hdrNumBuffersOff = 10
)

// struct virtio_net_config (5.1.4): mac[6] at 0, status le16 at 6.
const (
	cfgMACOff    = 0
	cfgStatusOff = 6
	netConfigLen = 8
)

// Layout of BAR 0 (see the package doc).
const (
	BAR              = 0
	BARSize          = 0x4000
	CommonOffset     = 0x0000
	ISROffset        = 0x1000
	DeviceOffset     = 0x2000
	NotifyOffset     = 0x3000
	regionSize       = 0x1000
	NotifyMultiplier = 4
)

// Limits.
const (
	// MaxFrameLen bounds an Ethernet frame either way: no segmentation
	// offload is offered, so nothing legitimate is longer.
	MaxFrameLen = 65535
	maxTxChain  = NetHdrLen + MaxFrameLen
	// maxRxChain bounds one receive chain's writable bytes: more than any
	// frame needs, small enough to walk quickly.
	maxRxChain = 1 << 20
	// DefaultQueueSize is the queues' maximum size, as QEMU's default.
	DefaultQueueSize = 256
	DefaultMaxHeld   = 256
	// DefaultMaxHeldBytes bounds the bytes of held frames, and
	// maxHeldBytes what New accepts: the saved state must fit in the
	// PCI bus's state, which takes at most 1 MiB per function.
	DefaultMaxHeldBytes = 512 << 10
	maxHeldBytes        = 960 << 10
)

// Backend is the host side of the NIC.
type Backend interface {
	// Transmit takes one frame the guest sent (without the virtio
	// header); seq is 1 for the first frame and increases by one per
	// frame. The frame is the backend's to keep. It is called from the
	// guest's notification (a VM exit), so it must not block: an
	// output-commit layer queues the frame and returns.
	Transmit(seq uint64, frame []byte)
}

// BackendFunc adapts a function to a Backend.
type BackendFunc func(seq uint64, frame []byte)

// Transmit calls f.
func (f BackendFunc) Transmit(seq uint64, frame []byte) { f(seq, frame) }

// Options configure a Device. Zero values take the defaults.
type Options struct {
	MAC       [6]byte
	QueueSize uint16 // maximum queue size, a power of two; DefaultQueueSize
	MaxHeld   int    // receive frames held at most; DefaultMaxHeld
	// MaxHeldBytes bounds the held frames' total size;
	// DefaultMaxHeldBytes, at most 960 KiB.
	MaxHeldBytes int
	// NoMergeable leaves VIRTIO_NET_F_MRG_RXBUF unoffered: each received
	// frame then takes exactly one receive chain.
	NoMergeable bool
}

// Stats are the device's counters, saved with it.
type Stats struct {
	TxFrames          uint64
	RxFrames          uint64
	RxDroppedFull     uint64 // the held queue was full
	RxDroppedNotReady uint64 // the driver was not ready (no DRIVER_OK)
	RxDroppedOversize uint64 // over MaxFrameLen
	RxDroppedSmall    uint64 // larger than the guest's receive buffers
	GuestErrors       uint64 // faulty guest: DEVICE_NEEDS_RESET set
	BadNotifies       uint64 // notification of an absent or disabled queue
}

// Device is a virtio-net PCI function. Build it with New.
type Device struct {
	cfg      *pci.Config
	mem      virtio.GuestMemory
	backend  Backend
	maxHeld  int
	maxBytes int // of held frames
	offered  uint64
	pciCap   uint8 // offset of the PCI access capability

	status     uint8
	driver     uint64
	devSel     uint32
	drvSel     uint32
	queueSel   uint16
	queues     [numQueues]virtio.Queue
	isr        uint8
	generation uint8
	mac        [6]byte
	linkUp     bool
	pciCfg     [pciCfgLen]byte
	txSeq      uint64
	rxSeq      uint64
	stats      Stats
	held       [][]byte
	heldBytes  int

	quiesced bool
	lastErr  error
	chains   []virtio.Chain // scratch
	buf      []byte         // scratch
}

// New returns a reset device whose rings live in mem and whose frames go
// to backend.
func New(mem virtio.GuestMemory, backend Backend, o Options) (*Device, error) {
	if mem == nil || backend == nil {
		return nil, errors.New("virtionet: guest memory and backend are required")
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.QueueSize&(o.QueueSize-1) != 0 || o.QueueSize > virtio.MaxQueueSize {
		return nil, fmt.Errorf("virtionet: queue size %d: not a power of two up to %d", o.QueueSize, virtio.MaxQueueSize)
	}
	if o.MaxHeld <= 0 {
		o.MaxHeld = DefaultMaxHeld
	}
	if o.MaxHeldBytes <= 0 {
		o.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if o.MaxHeldBytes > maxHeldBytes {
		return nil, fmt.Errorf("virtionet: %d bytes of held frames, at most %d", o.MaxHeldBytes, maxHeldBytes)
	}
	cfg, err := pci.NewConfig(pci.Header{
		VendorID: virtio.PCIVendorID, DeviceID: PCIDeviceID, Revision: virtio.PCIRevisionModern,
		Class: ClassNet, SubsysVendor: virtio.PCISubsysVendorID, Subsys: virtio.PCISubsysID,
		InterruptPin: 1, BARs: [pci.NumBARs]pci.BAR{BAR: {Size: BARSize}},
	})
	if err != nil {
		return nil, fmt.Errorf("virtionet: configuration space: %w", err)
	}
	d := &Device{cfg: cfg, mem: mem, backend: backend, maxHeld: o.MaxHeld, maxBytes: o.MaxHeldBytes, mac: o.MAC, linkUp: true,
		offered: 1<<virtio.FVersion1 | 1<<FMAC | 1<<FStatus}
	if !o.NoMergeable {
		d.offered |= 1 << FMrgRxBuf
	}
	if err := d.addCapabilities(); err != nil {
		return nil, err
	}
	for i := range d.queues {
		d.queues[i].MaxSize = o.QueueSize
		d.queues[i].Reset()
	}
	return d, nil
}

// virtioCap is the body of struct virtio_pci_cap after cap_vndr and
// cap_next (4.1.4), with extra trailing bytes.
func virtioCap(capLen, cfgType uint8, offset, length uint32, extra ...byte) []byte {
	b := []byte{capLen, cfgType, BAR, 0, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, offset)
	b = binary.LittleEndian.AppendUint32(b, length)
	return append(b, extra...)
}

func (d *Device) addCapabilities() error {
	var mult [4]byte
	binary.LittleEndian.PutUint32(mult[:], NotifyMultiplier)
	for _, c := range [][]byte{
		virtioCap(virtio.PCICapLen, virtio.PCICapCommonCfg, CommonOffset, virtio.CommonCfgLen),
		virtioCap(virtio.PCINotifyCapLen, virtio.PCICapNotifyCfg, NotifyOffset, numQueues*NotifyMultiplier, mult[:]...),
		virtioCap(virtio.PCICapLen, virtio.PCICapISRCfg, ISROffset, 1),
		virtioCap(virtio.PCICapLen, virtio.PCICapDeviceCfg, DeviceOffset, netConfigLen),
	} {
		if _, err := d.cfg.AddCapability(virtio.CapVendor, c); err != nil {
			return fmt.Errorf("virtionet: %w", err)
		}
	}
	// The PCI access capability's fields are driver-written: they are
	// kept in pciCfg and read as zero from the read-only space.
	off, err := d.cfg.AddCapability(virtio.CapVendor, []byte{virtio.PCICfgCapLen, virtio.PCICapPCICfg, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if err != nil {
		return fmt.Errorf("virtionet: %w", err)
	}
	d.pciCap = off
	return nil
}

// Config returns the configuration space (for BARAddress and Command).
func (d *Device) Config() *pci.Config { return d.cfg }

// InterruptPin implements pci.INTxUser (INTA#).
func (d *Device) InterruptPin() uint8 { return d.cfg.InterruptPin() }

// ConnectINTx implements pci.INTxUser.
func (d *Device) ConnectINTx(l devices.Line) { d.cfg.ConnectINTx(l) }

// Stats returns the counters.
func (d *Device) Stats() Stats { return d.stats }

// Err returns the guest error that set DEVICE_NEEDS_RESET, nil if none
// since the last reset (diagnostics; not saved).
func (d *Device) Err() error { return d.lastErr }

// Status returns the device status byte.
func (d *Device) Status() uint8 { return d.status }

// TxSeq returns the sequence number of the last frame given to the
// backend, 0 before the first.
func (d *Device) TxSeq() uint64 { return d.txSeq }

// RxSeq returns the sequence number of the last frame Receive accepted:
// it counts every accepted frame from 1, never resets and is part of the
// saved state, so a checkpoint says exactly which received frames it
// holds (delivered or held) and which came after it.
func (d *Device) RxSeq() uint64 { return d.rxSeq }

// Held returns how many received frames are held, not yet delivered.
func (d *Device) Held() int { return len(d.held) }

// MAC returns the device's MAC address.
func (d *Device) MAC() [6]byte { return d.mac }

// The contracts this device meets.
var (
	_ pci.INTxUser        = (*Device)(nil)
	_ devices.MMIODevice  = (*Device)(nil)
	_ devices.Snapshotter = (*Device)(nil)
)
