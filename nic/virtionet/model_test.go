package virtionet

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/irq"
)

// vmodel is a device-side model of a modern virtio-net device: the
// common configuration with feature selection and per-queue registers,
// the notify area, the ISR byte and the network configuration, and split
// virtqueues it consumes from the driver ring and completes in the used
// ring (elements first, index last), raising its line.
type vmodel struct {
	mu        sync.Mutex
	mem       *dma.Region
	line      *irq.Chan
	offered   uint64
	refuse    bool // clear FEATURES_OK: the device rejects the driver's set
	devSel    uint32
	drvSel    uint32
	accepted  uint64
	status    uint8
	qsel      uint16
	q         [2]mqueue
	isr       uint8
	mac       [6]byte
	mtu       uint16 // non-zero: VIRTIO_NET_F_MTU offered with this mtu
	link      bool
	linkReads int    // reads of the config's status field
	cfgVector uint16 // MSI-X vector for configuration changes
	sent      [][]byte
	txHold    bool
	notifies  [2]int
}

type mqueue struct {
	max, size, vector  uint16
	desc, avail, used  uint64
	enabled            bool
	lastAvail, usedIdx uint16
}

const (
	modelMult    = 4
	modelVectors = 3 // MSI-X table entries
)

func newVModel(mem *dma.Region, mac [6]byte) *vmodel {
	m := &vmodel{mem: mem, line: irq.NewChan(), mac: mac, link: true,
		offered: 1<<FeatureVersion1 | 1<<FeatureNetMAC | 1<<FeatureNetStatus | 1<<FeatureNetMrgRx}
	m.q[0].max, m.q[1].max = 256, 256
	m.q[0].vector, m.q[1].vector = noVector, noVector
	return m
}

func (m *vmodel) transport() Transport {
	return Transport{Common: commonWin{m}, Notify: notifyWin{m}, ISR: isrWin{m}, Device: devWin{m}, NotifyMultiplier: modelMult}
}

func (m *vmodel) slice(pa uint64, n int) []byte {
	b, err := m.mem.Slice(pa, uint64(n))
	if err != nil {
		panic(err)
	}
	return b
}

// availEntry returns the next descriptor the driver made available on q.
func (m *vmodel) availEntry(qi int) (uint16, bool) {
	q := &m.q[qi]
	if !q.enabled { // a reset device reads no ring
		return 0, false
	}
	ring := m.slice(q.avail, ringHeaderLen+2*int(q.size))
	idx := uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&ring[0]))) >> 16)
	if q.lastAvail == idx {
		return 0, false
	}
	id := binary.LittleEndian.Uint16(ring[ringHeaderLen+2*int(q.lastAvail%q.size):])
	q.lastAvail++
	return id, true
}

func (m *vmodel) descBuf(qi int, id uint16) []byte {
	d := m.slice(m.q[qi].desc+uint64(id)*descSize, descSize)
	return m.slice(binary.LittleEndian.Uint64(d), int(binary.LittleEndian.Uint32(d[8:])))
}

// complete puts {id, n} in q's used ring and raises the queue interrupt.
func (m *vmodel) complete(qi int, id uint16, n uint32) {
	m.completeQuiet(qi, id, n)
	m.isr |= ISRQueue
	m.line.Fire()
}

// setLink changes the link state; with notify, it raises a
// configuration-change interrupt (ISR bit 1) as the device does.
func (m *vmodel) setLink(up, notify bool) {
	m.mu.Lock()
	m.link = up
	if notify {
		m.isr |= ISRConfig
	}
	m.mu.Unlock()
	if notify {
		m.line.Fire()
	}
}

// completeQuiet puts {id, n} in q's used ring without an interrupt.
func (m *vmodel) completeQuiet(qi int, id uint16, n uint32) {
	q := &m.q[qi]
	ring := m.slice(q.used, ringHeaderLen+usedElemSize*int(q.size))
	e := ring[ringHeaderLen+usedElemSize*int(q.usedIdx%q.size):]
	binary.LittleEndian.PutUint32(e, uint32(id))
	binary.LittleEndian.PutUint32(e[4:], n)
	q.usedIdx++
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&ring[0])), uint32(q.usedIdx)<<16)
}

func (m *vmodel) transmitLocked() {
	for {
		id, ok := m.availEntry(txQueue)
		if !ok {
			return
		}
		b := m.descBuf(txQueue, id)
		m.sent = append(m.sent, append([]byte(nil), b[netHdrLen:]...))
		m.complete(txQueue, id, 0)
	}
}

func (m *vmodel) flushTx() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transmitLocked()
}

// inject receives frame into the next receive buffer; false when the
// driver has posted none.
func (m *vmodel) inject(frame []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.availEntry(rxQueue)
	if !ok {
		return false
	}
	b := m.descBuf(rxQueue, id)
	clear(b[:netHdrLen])
	n := copy(b[netHdrLen:], frame)
	m.complete(rxQueue, id, uint32(netHdrLen+n))
	return true
}

// injectRaw completes the next receive buffer with a used element of the
// model's choosing (a bad id or length, as a broken device would).
func (m *vmodel) injectRaw(id uint16, n uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	real, ok := m.availEntry(rxQueue)
	if !ok {
		return false
	}
	if id == 0xFFFF {
		id = real
	}
	m.complete(rxQueue, id, n)
	return true
}

func (m *vmodel) frames() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.sent...)
}

type commonWin struct{ m *vmodel }

func (w commonWin) Read8(off uint32) uint8 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	switch off {
	case DeviceStatus:
		return w.m.status
	}
	return 0
}

func (w commonWin) Read16(off uint32) uint16 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	switch off {
	case NumQueues:
		return 2
	case QueueSize:
		if w.m.qsel < 2 {
			return w.m.q[w.m.qsel].max
		}
		return 0
	case QueueNotifyOff:
		return w.m.qsel
	case QueueMSIXVector:
		return w.m.q[w.m.qsel%2].vector
	case MSIXConfig:
		return w.m.cfgVector
	}
	return 0
}

func (w commonWin) Read32(off uint32) uint32 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if off == DeviceFeature && w.m.devSel < 2 {
		return uint32(w.m.offered >> (32 * w.m.devSel))
	}
	return 0
}

func (w commonWin) Write8(off uint32, v uint8) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if off != DeviceStatus {
		return
	}
	if v == 0 {
		w.m.status, w.m.accepted = 0, 0
		for i := range w.m.q {
			w.m.q[i] = mqueue{max: w.m.q[i].max, vector: noVector}
		}
		return
	}
	if v&StatusFeaturesOK != 0 && (w.m.refuse || w.m.accepted&^w.m.offered != 0) {
		v &^= StatusFeaturesOK
	}
	w.m.status = v
}

func (w commonWin) Write16(off uint32, v uint16) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	switch off {
	case QueueSelect:
		w.m.qsel = v
	case QueueSize:
		w.m.q[w.m.qsel].size = v
	case QueueEnable:
		w.m.q[w.m.qsel].enabled = v == 1
	case QueueMSIXVector:
		if v >= modelVectors && v != noVector {
			v = noVector // mapping failed (4.1.4.3.1)
		}
		w.m.q[w.m.qsel%2].vector = v
	case MSIXConfig:
		w.m.cfgVector = v
	}
}

func (w commonWin) Write32(off uint32, v uint32) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	q := &w.m.q[w.m.qsel%2]
	set := func(p *uint64, high bool) {
		if high {
			*p = *p&0xFFFFFFFF | uint64(v)<<32
		} else {
			*p = *p&^0xFFFFFFFF | uint64(v)
		}
	}
	switch off {
	case DeviceFeatureSelect:
		w.m.devSel = v
	case DriverFeatureSelect:
		w.m.drvSel = v
	case DriverFeature:
		set(&w.m.accepted, w.m.drvSel == 1)
	case QueueDesc, QueueDesc + 4:
		set(&q.desc, off == QueueDesc+4)
	case QueueDriver, QueueDriver + 4:
		set(&q.avail, off == QueueDriver+4)
	case QueueDevice, QueueDevice + 4:
		set(&q.used, off == QueueDevice+4)
	}
}

type notifyWin struct{ m *vmodel }

func (w notifyWin) Read8(uint32) uint8   { return 0 }
func (w notifyWin) Read16(uint32) uint16 { return 0 }
func (w notifyWin) Read32(uint32) uint32 { return 0 }
func (w notifyWin) Write8(uint32, uint8) {}
func (w notifyWin) Write32(uint32, uint32) {
	panic("virtio model: 32-bit notify")
}

// Write16 is a queue notification: the offset must be the queue's
// notify_off times the multiplier, the value its index (4.1.4.4).
func (w notifyWin) Write16(off uint32, v uint16) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if off != uint32(v)*modelMult || v > 1 {
		panic("virtio model: notification at the wrong offset")
	}
	w.m.notifies[v]++
	if v == txQueue && !w.m.txHold {
		w.m.transmitLocked()
	}
}

type isrWin struct{ m *vmodel }

func (w isrWin) Read8(uint32) uint8 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	v := w.m.isr
	w.m.isr = 0
	return v
}
func (w isrWin) Read16(uint32) uint16   { return 0 }
func (w isrWin) Read32(uint32) uint32   { return 0 }
func (w isrWin) Write8(uint32, uint8)   {}
func (w isrWin) Write16(uint32, uint16) {}
func (w isrWin) Write32(uint32, uint32) {}

type devWin struct{ m *vmodel }

func (w devWin) Read8(off uint32) uint8 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if off < 6 {
		return w.m.mac[off]
	}
	return 0
}

func (w devWin) Read16(off uint32) uint16 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	switch {
	case off == NetConfigStatus:
		w.m.linkReads++
		if w.m.link {
			return NetStatusLinkUp
		}
	case off == NetConfigMTU:
		return w.m.mtu
	}
	return 0
}
func (w devWin) Read32(uint32) uint32   { return 0 }
func (w devWin) Write8(uint32, uint8)   {}
func (w devWin) Write16(uint32, uint16) {}
func (w devWin) Write32(uint32, uint32) {}
