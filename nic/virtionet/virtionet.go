package virtionet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/irq"
)

// Config is what Open needs. Zero sizes take the defaults in parentheses.
type Config struct {
	Name      string
	Transport Transport
	DMA       *dma.Region
	IRQ       irq.Line
	QueueSize int // descriptors per queue, a power of 2, at most the device's (256)
	RxQueue   int // received frames waiting for Receive (1024)
	// MSIX: the driver enabled MSI-X and put a message in table entry 0;
	// both queues interrupt through it (4.1.4.3 queue_msix_vector).
	// Otherwise the device uses INTx and the ISR byte.
	MSIX bool
	// MTU is the largest payload the driver wants (1500). Above 1500 it
	// needs the device's VIRTIO_NET_F_MTU (QEMU: host_mtu=N) and uses
	// the smaller of the two; a device without it keeps 1500.
	MTU int
	// Watchdog is the period of the lost-interrupt watchdog
	// (nic.WatchdogPeriod); negative turns it off.
	Watchdog time.Duration
}

// stdMTU is Ethernet's payload size; larger ones need VIRTIO_NET_F_MTU.
const stdMTU = 1500

// MaxMTU is the largest MTU the driver asks for: each receive buffer
// holds a whole frame (no mergeable buffers), and 64 KiB is the
// descriptor length's practical limit for frames.
const MaxMTU = 65535 - nic.HeaderLen - netHdrLen

// bufSizeFor is each receive and transmit buffer for an MTU: the network
// header and the longest frame, rounded up to 2 KiB (2048 at 1500).
func bufSizeFor(mtu int) int {
	return (netHdrLen + nic.HeaderLen + mtu + 2047) &^ 2047
}

// ErrFeatures is returned when the device lacks a required feature or
// refuses the driver's set.
var ErrFeatures = errors.New("virtio-net: feature negotiation failed")

// Device is an open virtio network device. It implements nic.NIC.
type Device struct {
	cfg      Config
	t        Transport
	mac      nic.MAC
	features uint64
	stats    nic.Stats
	rxq      *nic.RxQueue
	ready    nic.TxSignal
	hasLink  bool // STATUS negotiated: link state is in the device config
	// linkUp is the config's link status as last read: at open, at each
	// configuration-change interrupt (with MSI-X, at each interrupt: the
	// message does not say why) and at each watchdog tick. Transmit and
	// LinkUp use it: a read of the device's configuration per frame is an
	// uncached access on hardware and takes the emulator's lock in QEMU.
	linkUp  atomic.Bool
	mtu     int
	bufSize int

	rxMu     sync.Mutex
	rx       *queue
	rxNotify uint32

	txMu     sync.Mutex
	tx       *queue
	txNotify uint32
	txFull   bool
	txQuiet  bool // frames posted with more and the device not yet told

	closed atomic.Bool
	stop   chan struct{}
	// watchdog is closed once the lost-interrupt watchdog has ended.
	watchdog <-chan struct{}
	// serviceMu is held by each service pass. Close takes it, and txMu,
	// once it has marked the device closed, so no pass and no transmit
	// still uses the rings when the
	// DMA memory is freed (and reused by the next Open on it). The
	// interrupt goroutine itself may stay blocked in its Wait.
	serviceMu sync.Mutex
}

// Open initializes the device (3.1.1) and starts its interrupt goroutine.
func Open(cfg Config) (*Device, error) {
	if cfg.MTU == 0 {
		cfg.MTU = stdMTU
	}
	if cfg.MTU < 68 || cfg.MTU > MaxMTU {
		return nil, fmt.Errorf("virtio-net: MTU %d: want 68-%d", cfg.MTU, MaxMTU)
	}

	if cfg.RxQueue == 0 {
		cfg.RxQueue = 1024
	}
	if cfg.Watchdog == 0 {
		cfg.Watchdog = nic.WatchdogPeriod
	}
	d := &Device{cfg: cfg, t: cfg.Transport, ready: nic.NewTxSignal(), stop: make(chan struct{})}
	d.rxq = nic.NewRxQueue(cfg.RxQueue, cfg.MTU+nic.HeaderLen, &d.stats)
	c := d.t.Common
	if err := d.reset(); err != nil {
		return nil, err
	}
	c.Write8(DeviceStatus, StatusAcknowledge)
	c.Write8(DeviceStatus, StatusAcknowledge|StatusDriver)
	if err := d.negotiate(); err != nil {
		c.Write8(DeviceStatus, StatusFailed)
		return nil, err
	}
	for i := range d.mac {
		d.mac[i] = d.t.Device.Read8(NetConfigMAC + uint32(i))
	}
	d.mtu = stdMTU
	if d.features&(1<<FeatureNetMTU) != 0 {
		// 5.1.4.1: the driver uses at most the device's mtu.
		d.mtu = min(cfg.MTU, max(int(d.t.Device.Read16(NetConfigMTU)), 68))
	}
	d.bufSize = bufSizeFor(d.mtu)
	if d.cfg.QueueSize == 0 {
		// At most about 1 MiB of buffers a queue: 256 standard ones,
		// fewer long ones (at least 32).
		d.cfg.QueueSize = 256
		for d.cfg.QueueSize > 32 && d.cfg.QueueSize*d.bufSize > 1<<20 {
			d.cfg.QueueSize /= 2
		}
	}
	var err error
	if d.rx, d.rxNotify, err = d.setupQueue(rxQueue); err == nil {
		d.tx, d.txNotify, err = d.setupQueue(txQueue)
	}
	if err != nil {
		c.Write8(DeviceStatus, StatusFailed)
		d.free()
		return nil, err
	}
	cfgVec := uint16(noVector)
	if d.cfg.MSIX {
		cfgVec = 0 // configuration changes share the queues' message
	}
	c.Write16(MSIXConfig, cfgVec)
	for {
		i, ok := d.rx.take()
		if !ok {
			break
		}
		d.rx.post(i, d.bufSize, DescFWrite)
	}
	c.Write8(DeviceStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	d.readLink()
	d.t.Notify.Write16(d.rxNotify, rxQueue)
	go d.interrupts()
	d.watchdog = nic.StartWatchdog(&d.stats, d.cfg.Watchdog, d.stop, d.pending, d.Service)
	return d, nil
}

// pending reports whether either used ring holds elements the driver has
// not taken; the marker is the driver's position in both.
func (d *Device) pending() (uint64, bool) {
	d.readLink() // in case a configuration interrupt was lost
	d.rxMu.Lock()
	rx := d.rx.lastUsed
	rxWork := d.rx.usedIdx() != rx
	d.rxMu.Unlock()
	d.txMu.Lock()
	tx := d.tx.lastUsed
	txWork := d.tx.usedIdx() != tx
	d.txMu.Unlock()
	return uint64(rx)<<16 | uint64(tx), rxWork || txWork
}

// reset writes 0 to device_status and waits until it reads 0 (4.1.4.3.2).
func (d *Device) reset() error {
	d.t.Common.Write8(DeviceStatus, 0)
	for deadline := time.Now().Add(time.Second); d.t.Common.Read8(DeviceStatus) != 0; time.Sleep(10 * time.Microsecond) {
		if time.Now().After(deadline) {
			return errors.New("virtio-net: device did not reset within 1s")
		}
	}
	return nil
}

// negotiate offers VERSION_1, MAC and STATUS (those the device has) and
// checks that the device keeps FEATURES_OK (3.1.1 steps 4-6).
func (d *Device) negotiate() error {
	c := d.t.Common
	var dev uint64
	for sel := uint32(0); sel < 2; sel++ {
		c.Write32(DeviceFeatureSelect, sel)
		dev |= uint64(c.Read32(DeviceFeature)) << (32 * sel)
	}
	if dev&(1<<FeatureVersion1) == 0 {
		return fmt.Errorf("%w: no VERSION_1 (a legacy device)", ErrFeatures)
	}
	if dev&(1<<FeatureNetMAC) == 0 {
		return fmt.Errorf("%w: no MAC feature", ErrFeatures)
	}
	want := dev & (1<<FeatureVersion1 | 1<<FeatureNetMAC | 1<<FeatureNetStatus)
	if d.cfg.MTU > stdMTU {
		want |= dev & (1 << FeatureNetMTU)
	}
	for sel := uint32(0); sel < 2; sel++ {
		c.Write32(DriverFeatureSelect, sel)
		c.Write32(DriverFeature, uint32(want>>(32*sel)))
	}
	c.Write8(DeviceStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if c.Read8(DeviceStatus)&StatusFeaturesOK == 0 {
		return fmt.Errorf("%w: device refused features %#x", ErrFeatures, want)
	}
	d.features = want
	d.hasLink = want&(1<<FeatureNetStatus) != 0
	return nil
}

// setupQueue sizes, allocates and enables queue q (4.1.5.1.3) and
// returns it with its notification offset.
func (d *Device) setupQueue(q uint16) (*queue, uint32, error) {
	c := d.t.Common
	c.Write16(QueueSelect, q)
	max := c.Read16(QueueSize)
	if max == 0 {
		return nil, 0, fmt.Errorf("virtio-net: queue %d does not exist", q)
	}
	size := uint16(d.cfg.QueueSize)
	for size > max {
		size /= 2
	}
	vq, err := newQueue(d.cfg.DMA, size, d.bufSize)
	if err != nil {
		return nil, 0, fmt.Errorf("virtio-net: queue %d: %w", q, err)
	}
	c.Write16(QueueSize, size)
	vec := uint16(noVector)
	if d.cfg.MSIX {
		vec = 0
	}
	c.Write16(QueueMSIXVector, vec)
	if got := c.Read16(QueueMSIXVector); got != vec {
		vq.release(d.cfg.DMA)
		return nil, 0, fmt.Errorf("virtio-net: queue %d: MSI-X vector %#x refused (reads %#x)", q, vec, got)
	}
	write64(c, QueueDesc, vq.desc.PA)
	write64(c, QueueDriver, vq.avail.PA)
	write64(c, QueueDevice, vq.used.PA)
	notify := uint32(c.Read16(QueueNotifyOff)) * d.t.NotifyMultiplier
	c.Write16(QueueEnable, 1)
	return vq, notify, nil
}

// write64 writes a 64-bit common-configuration field as two dwords, low
// first (4.1.3.1: the driver accesses 64-bit fields as two 32-bit ones).
func write64(s interface{ Write32(uint32, uint32) }, off uint32, v uint64) {
	s.Write32(off, uint32(v))
	s.Write32(off+4, uint32(v>>32))
}

func (d *Device) free() {
	for _, q := range []*queue{d.rx, d.tx} {
		if q != nil {
			q.release(d.cfg.DMA)
		}
	}
}

// interrupts is the interrupt goroutine. Reading the ISR byte clears it
// and lowers INTx (4.1.4.5); both queues are serviced on every wake-up.
func (d *Device) interrupts() {
	for {
		if _, err := d.cfg.IRQ.Wait(); err != nil || d.closed.Load() {
			return
		}
		// An MSI-X message is this device's alone; an INTx line may be
		// shared, so only a set ISR bit makes it this device's.
		if d.service() != 0 || d.cfg.MSIX {
			d.stats.Interrupts.Add(1)
		}
	}
}

// Service handles received frames and finished transmissions. The
// interrupt goroutine and the watchdog call it.
func (d *Device) Service() { d.service() }

// service returns the ISR status it read (and so cleared). With MSI-X it
// reads no ISR (4.1.4.5.2: the driver should not) and the link status
// instead.
func (d *Device) service() uint8 {
	d.serviceMu.Lock()
	defer d.serviceMu.Unlock()
	if d.closed.Load() {
		return 0
	}
	var isr uint8
	if d.cfg.MSIX {
		d.readLink()
	} else if isr = d.t.ISR.Read8(0); isr&ISRConfig != 0 {
		d.readLink()
	}
	d.receive()
	d.reclaim()
	return isr
}

// receive takes the used receive buffers, queues good frames, counts bad
// ones, and gives every buffer back to the device.
func (d *Device) receive() {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	posted := false
	for {
		id, n, ok := d.rx.nextUsed()
		if !ok {
			break
		}
		if id >= d.rx.size {
			// A descriptor index the driver never posted: the used ring
			// is corrupt; count it and ignore the element.
			d.stats.RxErrors.Add(1)
			continue
		}
		switch frame := int(n) - netHdrLen; {
		case int(n) > d.bufSize, frame < nic.HeaderLen, frame > d.mtu+nic.HeaderLen:
			d.stats.RxErrors.Add(1)
		default:
			d.rxq.Push(d.rxq.Copy(d.rx.buf(id)[netHdrLen:n]))
		}
		d.rx.post(id, d.bufSize, DescFWrite)
		posted = true
	}
	if posted && d.rx.deviceWantsNotify() {
		d.t.Notify.Write16(d.rxNotify, rxQueue)
	}
}

// reclaim frees transmit descriptors the device has used.
func (d *Device) reclaim() {
	d.txMu.Lock()
	freed := d.reclaimLocked()
	wake := freed > 0 && d.txFull
	if wake {
		d.txFull = false
	}
	d.txMu.Unlock()
	if wake {
		d.ready.Notify()
	}
}

func (d *Device) reclaimLocked() int {
	n := 0
	for {
		id, _, ok := d.tx.nextUsed()
		if !ok {
			return n
		}
		if id < d.tx.size {
			d.tx.free = append(d.tx.free, id)
			n++
		}
	}
}

// Transmit implements nic.NIC: a zeroed header (no offloads) and the frame
// in one device-readable descriptor.
func (d *Device) Transmit(frame []byte) error { return d.TransmitMore(frame, false) }

var _ nic.Batcher = (*Device)(nil)

// TransmitMore implements nic.Batcher: with more, the frame is posted (the
// ring index moves, so a device already draining the queue takes it) but
// the notification, a write to the device's notify register and under an
// emulator an exit, waits for the burst's last frame; a call that fails
// notifies for the frames before it.
func (d *Device) TransmitMore(frame []byte, more bool) (err error) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	defer func() {
		if (!more || err != nil) && d.txQuiet && !d.closed.Load() {
			d.txQuiet = false
			if d.tx.deviceWantsNotify() {
				d.t.Notify.Write16(d.txNotify, txQueue)
			}
		}
	}()
	if d.closed.Load() {
		return nic.ErrClosed
	}
	if err := nic.CheckFrame(frame, d.mtu); err != nil {
		return err
	}
	if !d.LinkUp() {
		return nic.ErrLinkDown
	}
	i, ok := d.tx.take()
	if !ok {
		d.reclaimLocked()
		if i, ok = d.tx.take(); !ok {
			d.txFull = true
			d.stats.TxQueueFull.Add(1)
			return nic.ErrQueueFull
		}
	}
	b := d.tx.buf(i)
	clear(b[:netHdrLen])
	copy(b[netHdrLen:], frame)
	d.tx.post(i, netHdrLen+len(frame), 0)
	d.txQuiet = true
	d.stats.CountTx(len(frame))
	return nil
}

// Describe implements nic.Describer: each queue's driver index (avail),
// the device's used index and the driver's position in the used ring,
// whether the device asked for notifications, the frames waiting for
// Receive. The ISR byte is not read, as reading clears it.
func (d *Device) Describe() string {
	d.rxMu.Lock()
	rxAvail, rxUsed, rxLast, rxNotify := d.rx.availIdx, d.rx.usedIdx(), d.rx.lastUsed, d.rx.deviceWantsNotify()
	d.rxMu.Unlock()
	d.txMu.Lock()
	txAvail, txUsed, txLast, txFree, full := d.tx.availIdx, d.tx.usedIdx(), d.tx.lastUsed, len(d.tx.free), d.txFull
	d.txMu.Unlock()
	return fmt.Sprintf("rx avail %d used %d taken %d (notify %v), tx avail %d used %d taken %d free %d (full %v), queued %d",
		rxAvail, rxUsed, rxLast, rxNotify, txAvail, txUsed, txLast, txFree, full, d.rxq.Len())
}

// Receive implements nic.NIC.
func (d *Device) Receive(ctx context.Context) ([]byte, error) { return d.rxq.Pop(ctx) }

var _ nic.Recycler = (*Device)(nil)

// Recycle implements nic.Recycler: the frame's buffer takes a later
// frame's copy.
func (d *Device) Recycle(frame []byte) { d.rxq.Recycle(frame) }

// Name implements nic.NIC.
func (d *Device) Name() string { return d.cfg.Name }

// MAC implements nic.NIC.
func (d *Device) MAC() nic.MAC { return d.mac }

// MTU implements nic.NIC.
func (d *Device) MTU() int { return d.mtu }

// LinkUp implements nic.NIC: the config's status field as last read
// (Device.linkUp) with STATUS negotiated, else always up (5.1.4.2).
func (d *Device) LinkUp() bool { return d.linkUp.Load() }

// readLink reads the config's link status into linkUp.
func (d *Device) readLink() {
	d.linkUp.Store(!d.hasLink || d.t.Device.Read16(NetConfigStatus)&NetStatusLinkUp != 0)
}

// TxReady implements nic.NIC.
func (d *Device) TxReady() <-chan struct{} { return d.ready }

// Counters implements nic.NIC.
func (d *Device) Counters() nic.Counters { return d.stats.Snapshot() }

// Features returns the negotiated feature bits.
func (d *Device) Features() uint64 { return d.features }

// Close resets the device (it stops using the rings), then frees them.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(d.stop)
	err := d.reset()
	d.cfg.IRQ.Close()
	d.rxq.Close()
	<-d.watchdog       // its pending reads the rings
	d.serviceMu.Lock() // the last service pass has ended; none starts now
	d.serviceMu.Unlock()
	d.txMu.Lock() // likewise the last transmit, which checks closed under it
	d.txMu.Unlock()
	if err == nil {
		d.free()
	}
	return err
}

var (
	_ nic.NIC       = (*Device)(nil)
	_ nic.Describer = (*Device)(nil)
)
