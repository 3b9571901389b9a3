package virtionet

import (
	"encoding/binary"

	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// status bits the driver may hold; DEVICE_NEEDS_RESET is the device's.
const knownStatus = virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK |
	virtio.StatusFeaturesOK | virtio.StatusDeviceNeedsReset | virtio.StatusFailed

// MMIORead implements devices.MMIODevice for BAR 0.
func (d *Device) MMIORead(offset uint64, data []byte) {
	clear(data)
	switch {
	case offset < CommonOffset+regionSize:
		var img [virtio.CommonCfgLen]byte
		d.commonImage(&img)
		if offset < virtio.CommonCfgLen {
			copy(data, img[offset:])
		}
	case offset == ISROffset && len(data) > 0:
		// Reading the ISR clears it and deasserts INTx (4.1.4.5).
		data[0] = d.isr
		d.isr = 0
		d.cfg.SetINTx(false)
	case offset >= DeviceOffset && offset < DeviceOffset+regionSize:
		var img [netConfigLen]byte
		copy(img[cfgMACOff:], d.mac[:])
		if d.linkUp {
			img[cfgStatusOff] = StatusLinkUp
		}
		if o := offset - DeviceOffset; o < netConfigLen {
			copy(data, img[o:])
		}
	}
}

// commonImage lays out struct virtio_pci_common_cfg as read now.
func (d *Device) commonImage(img *[virtio.CommonCfgLen]byte) {
	le := binary.LittleEndian
	le.PutUint32(img[virtio.CommonDeviceFeatureSelect:], d.devSel)
	if d.devSel < 2 {
		le.PutUint32(img[virtio.CommonDeviceFeature:], uint32(d.offered>>(32*d.devSel)))
	}
	le.PutUint32(img[virtio.CommonDriverFeatureSelect:], d.drvSel)
	if d.drvSel < 2 {
		le.PutUint32(img[virtio.CommonDriverFeature:], uint32(d.driver>>(32*d.drvSel)))
	}
	le.PutUint16(img[virtio.CommonMSIXConfig:], virtio.MSINoVector)
	le.PutUint16(img[virtio.CommonNumQueues:], numQueues)
	img[virtio.CommonDeviceStatus] = d.status
	img[virtio.CommonConfigGeneration] = d.generation
	le.PutUint16(img[virtio.CommonQueueSelect:], d.queueSel)
	le.PutUint16(img[virtio.CommonQueueMSIXVector:], virtio.MSINoVector)
	if d.queueSel >= numQueues {
		return // an absent queue reads queue_size 0 (4.1.4.3.1)
	}
	q := &d.queues[d.queueSel]
	le.PutUint16(img[virtio.CommonQueueSize:], q.Size)
	if q.Enabled {
		le.PutUint16(img[virtio.CommonQueueEnable:], 1)
	}
	le.PutUint16(img[virtio.CommonQueueNotifyOff:], d.queueSel)
	le.PutUint64(img[virtio.CommonQueueDesc:], q.Desc)
	le.PutUint64(img[virtio.CommonQueueDriver:], q.Driver)
	le.PutUint64(img[virtio.CommonQueueDevice:], q.Device)
}

// MMIOWrite implements devices.MMIODevice for BAR 0.
func (d *Device) MMIOWrite(offset uint64, data []byte) {
	var v uint64
	for i, b := range data {
		v |= uint64(b) << (8 * i)
	}
	switch {
	case offset < virtio.CommonCfgLen:
		d.commonWrite(offset, len(data), v)
	case offset >= NotifyOffset && offset < NotifyOffset+regionSize:
		// The queue is the one whose queue_notify_off times the
		// multiplier is this offset (4.1.4.4); the value written (its
		// index) adds nothing without VIRTIO_F_NOTIFICATION_DATA.
		o := offset - NotifyOffset
		if o%NotifyMultiplier != 0 {
			d.stats.BadNotifies++
			return
		}
		d.notify(o / NotifyMultiplier)
	}
	// ISR and device configuration are read-only (4.1.4.5, 5.1.4: the
	// driver writes no field of virtio_net_config without legacy or
	// control queue features).
}

// commonWrite writes a field of the common configuration. Fields are
// accessed at their natural width, 64-bit ones also as two 32-bit halves
// (4.1.3.1); other accesses are ignored.
func (d *Device) commonWrite(off uint64, size int, v uint64) {
	q := d.selected()
	switch {
	case off == virtio.CommonDeviceFeatureSelect && size == 4:
		d.devSel = uint32(v)
	case off == virtio.CommonDriverFeatureSelect && size == 4:
		d.drvSel = uint32(v)
	case off == virtio.CommonDriverFeature && size == 4:
		// Features are fixed once FEATURES_OK is set (3.1.1 step 5).
		if d.drvSel < 2 && d.status&virtio.StatusFeaturesOK == 0 {
			sh := 32 * d.drvSel
			d.driver = d.driver&^(0xFFFFFFFF<<sh) | v<<sh
		}
	case off == virtio.CommonDeviceStatus && size == 1:
		d.setStatus(uint8(v))
	case off == virtio.CommonQueueSelect && size == 2:
		d.queueSel = uint16(v)
	case q == nil || q.Enabled:
		// No queue selected, or its configuration is frozen once enabled.
	case off == virtio.CommonQueueSize && size == 2:
		q.Size = uint16(v)
	case off == virtio.CommonQueueEnable && size == 2:
		d.enable(q, v)
	case off >= virtio.CommonQueueDesc && off < virtio.CommonCfgLen:
		field := []*uint64{&q.Desc, &q.Driver, &q.Device}[(off-virtio.CommonQueueDesc)/8]
		switch within := off % 8; {
		case size == 8 && within == 0:
			*field = v
		case size == 4 && within == 0:
			*field = *field&^0xFFFFFFFF | v
		case size == 4 && within == 4:
			*field = *field&0xFFFFFFFF | v<<32
		}
	}
	// msix_config and queue_msix_vector: no MSI-X, so no vector can be
	// mapped and they keep reading NO_VECTOR (4.1.5.1.3).
}

func (d *Device) selected() *virtio.Queue {
	if d.queueSel >= numQueues {
		return nil
	}
	return &d.queues[d.queueSel]
}

// enable handles queue_enable: the driver writes 1 (writing 0 is not
// allowed, 4.1.4.3.2, and is ignored). A queue that cannot work is a
// faulty guest.
func (d *Device) enable(q *virtio.Queue, v uint64) {
	if v != 1 {
		return
	}
	if err := q.Check(); err != nil {
		d.guestError(err)
		return
	}
	q.Enabled = true
}

// setStatus handles a device status write (2.1, 3.1.1).
func (d *Device) setStatus(v uint8) {
	if v == 0 {
		d.reset()
		return
	}
	// Reserved bits are not kept; DEVICE_NEEDS_RESET is the device's to
	// set and is cleared only by reset (2.1.1).
	v = v&knownStatus&^virtio.StatusDeviceNeedsReset | d.status&virtio.StatusDeviceNeedsReset
	if v&virtio.StatusFeaturesOK != 0 && d.status&virtio.StatusFeaturesOK == 0 && !d.featuresOK() {
		v &^= virtio.StatusFeaturesOK // the driver re-reads it to learn of the refusal
	}
	d.status = v
	d.kick()
}

// featuresOK reports whether the driver's features can be accepted: only
// offered ones, and VERSION_1, since this device has no legacy interface.
func (d *Device) featuresOK() bool {
	return d.driver&^d.offered == 0 && d.driver&(1<<virtio.FVersion1) != 0
}

func (d *Device) negotiated(bit uint) bool { return d.driver&(1<<bit) != 0 }

// reset is the device reset (2.1: the driver writes 0 to status). The
// transmit sequence continues (output commit numbers frames for the
// machine's life); held frames were for the driver that went away.
func (d *Device) reset() {
	d.status, d.driver, d.devSel, d.drvSel, d.queueSel = 0, 0, 0, 0, 0
	for i := range d.queues {
		d.queues[i].Reset()
	}
	d.isr = 0
	d.cfg.SetINTx(false)
	d.stats.RxDroppedNotReady += uint64(len(d.held))
	d.held, d.heldBytes = nil, 0
	d.lastErr = nil
}

// live reports whether the device may use its queues: the driver is
// done (FEATURES_OK and DRIVER_OK), nothing failed, and the function may
// master the bus (PCI 3.0 6.2.2: no DMA without Bus Master).
func (d *Device) live() bool {
	const ready = virtio.StatusFeaturesOK | virtio.StatusDriverOK
	return d.status&ready == ready && d.status&(virtio.StatusDeviceNeedsReset|virtio.StatusFailed) == 0 &&
		d.cfg.Command()&pci.CommandBusMaster != 0
}

// guestError puts the device in DEVICE_NEEDS_RESET (2.1.2).
func (d *Device) guestError(err error) {
	d.stats.GuestErrors++
	if d.status&virtio.StatusDeviceNeedsReset != 0 {
		return
	}
	d.lastErr = err
	d.status |= virtio.StatusDeviceNeedsReset
	if d.status&virtio.StatusDriverOK != 0 {
		d.raise(virtio.ISRConfig)
	}
}

func (d *Device) raise(bits uint8) {
	d.isr |= bits
	d.cfg.SetINTx(true)
}

// SetLink sets the link status the driver reads in virtio_net_config
// and, when it changes, notifies a configuration change (4.1.4.3:
// config_generation changes; 4.1.5.3: ISR bit 1).
func (d *Device) SetLink(up bool) {
	if up == d.linkUp {
		return
	}
	d.linkUp = up
	d.generation++
	if d.status&virtio.StatusDriverOK != 0 {
		d.raise(virtio.ISRConfig)
	}
}
