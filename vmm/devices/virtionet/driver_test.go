package virtionet

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// The test guest: a Linux-like virtio driver working on a []byte memory.
const (
	memSize   = 0x50000 // rings and buffers, small so the random test copies it fast
	qsize     = 16
	rxRing    = 0x1000
	txRing    = 0x2000
	rxBufs    = 0x10000
	txBufs    = 0x40000
	bufStride = 0x800
)

type sent struct {
	seq   uint64
	frame []byte
}

type guest struct {
	t     testing.TB
	mem   virtio.ByteMemory
	dev   *Device
	line  *devtest.Line
	sent  []sent
	rxIdx uint16 // next available index the driver writes
	txIdx uint16
	rxOld uint16 // used entries already looked at
}

func newGuest(t testing.TB, o Options) *guest {
	g := &guest{t: t, mem: make(virtio.ByteMemory, memSize), line: &devtest.Line{}}
	dev, err := New(g.mem, BackendFunc(func(seq uint64, f []byte) { g.sent = append(g.sent, sent{seq, f}) }), o)
	if err != nil {
		t.Fatal(err)
	}
	g.dev = dev
	dev.ConnectINTx(g.line)
	return g
}

func (g *guest) r(off uint64, size int) uint64 {
	b := make([]byte, size)
	g.dev.MMIORead(off, b)
	var v uint64
	for i := range b {
		v |= uint64(b[i]) << (8 * i)
	}
	return v
}

func (g *guest) w(off uint64, size int, v uint64) {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	g.dev.MMIOWrite(off, b)
}

func (g *guest) status() uint8 { return uint8(g.r(virtio.CommonDeviceStatus, 1)) }

func (g *guest) setStatus(s uint8) { g.w(virtio.CommonDeviceStatus, 1, uint64(s)) }

// negotiate runs 3.1.1 steps 1-6 and reports whether FEATURES_OK stuck.
func (g *guest) negotiate(want uint64) bool {
	g.setStatus(0)
	g.setStatus(virtio.StatusAcknowledge)
	g.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	var offered uint64
	for sel := uint64(0); sel < 2; sel++ {
		g.w(virtio.CommonDeviceFeatureSelect, 4, sel)
		offered |= g.r(virtio.CommonDeviceFeature, 4) << (32 * sel)
	}
	for sel := uint64(0); sel < 2; sel++ {
		g.w(virtio.CommonDriverFeatureSelect, 4, sel)
		g.w(virtio.CommonDriverFeature, 4, uint64(uint32(want>>(32*sel))))
	}
	g.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	return g.status()&virtio.StatusFeaturesOK != 0
}

// setupQueue programs queue q as vp_modern_setup_vq does: 64-bit
// addresses as two 32-bit halves, then queue_enable.
func (g *guest) setupQueue(q uint16, ring uint64) {
	g.w(virtio.CommonQueueSelect, 2, uint64(q))
	if max := g.r(virtio.CommonQueueSize, 2); max != DefaultQueueSize {
		g.t.Fatalf("queue %d maximum size %d", q, max)
	}
	g.w(virtio.CommonQueueSize, 2, qsize)
	for i, a := range []uint64{ring, ring + 0x100, ring + 0x200} {
		off := uint64(virtio.CommonQueueDesc + 8*i)
		g.w(off, 4, a&0xFFFFFFFF)
		g.w(off+4, 4, a>>32)
	}
	g.w(virtio.CommonQueueEnable, 2, 1)
}

func (g *guest) init(features uint64) {
	g.t.Helper()
	if !g.negotiate(features) {
		g.t.Fatalf("features %#x refused", features)
	}
	g.rxIdx, g.txIdx, g.rxOld = 0, 0, 0
	clear(g.mem[rxRing : txRing+0x1000])
	g.setupQueue(RxQueue, rxRing)
	g.setupQueue(TxQueue, txRing)
	g.dev.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|pci.CommandBusMaster)
	g.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK)
}

const baseFeatures = 1<<virtio.FVersion1 | 1<<FMAC | 1<<FStatus

func (g *guest) put16(a uint64, v uint16) { binary.LittleEndian.PutUint16(g.mem[a:], v) }
func (g *guest) get16(a uint64) uint16    { return binary.LittleEndian.Uint16(g.mem[a:]) }
func (g *guest) get32(a uint64) uint32    { return binary.LittleEndian.Uint32(g.mem[a:]) }

func (g *guest) putDesc(ring uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
	d := g.mem[ring+16*uint64(i):]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// makeAvail puts head in the available ring of the queue at ring and
// publishes the new index.
func (g *guest) makeAvail(ring uint64, idx *uint16, head uint16) {
	g.put16(ring+0x100+4+2*uint64(*idx%qsize), head)
	*idx++
	g.put16(ring+0x102, *idx)
}

func (g *guest) notify(q uint16) { g.w(NotifyOffset+uint64(q)*NotifyMultiplier, 2, uint64(q)) }

// postRx makes n receive buffers of size bytes available and notifies.
func (g *guest) postRx(n int, size uint32) {
	for i := 0; i < n; i++ {
		slot := g.rxIdx % qsize
		g.putDesc(rxRing, slot, rxBufs+uint64(slot)*bufStride, size, virtio.DescFWrite, 0)
		g.makeAvail(rxRing, &g.rxIdx, slot)
	}
	g.notify(RxQueue)
}

// send transmits frame as Linux does: header and frame in one buffer.
func (g *guest) send(frame []byte) {
	slot := g.txIdx % qsize
	buf := txBufs + uint64(slot)*bufStride
	clear(g.mem[buf : buf+NetHdrLen])
	copy(g.mem[buf+NetHdrLen:], frame)
	g.putDesc(txRing, slot, buf, uint32(NetHdrLen+len(frame)), 0, 0)
	g.makeAvail(txRing, &g.txIdx, slot)
	g.notify(TxQueue)
}

type usedElem struct{ id, len uint32 }

func (g *guest) used(ring uint64, from uint16) []usedElem {
	var out []usedElem
	for i := from; i != g.get16(ring+0x202); i++ {
		e := ring + 0x200 + 4 + 8*uint64(i%qsize)
		out = append(out, usedElem{g.get32(e), g.get32(e + 4)})
	}
	return out
}

// received returns the frames delivered since the last call, with the
// num_buffers each header gave (mergeable buffers joined).
func (g *guest) received() (frames [][]byte, nbufs []int) {
	els := g.used(rxRing, g.rxOld)
	g.rxOld += uint16(len(els))
	for i := 0; i < len(els); {
		buf := rxBufs + uint64(els[i].id)*bufStride
		n := int(g.get16(buf + hdrNumBuffersOff))
		if n < 1 || i+n > len(els) {
			g.t.Fatalf("num_buffers %d with %d used entries left", n, len(els)-i)
		}
		var f []byte
		for j := 0; j < n; j++ {
			b := rxBufs + uint64(els[i+j].id)*bufStride
			f = append(f, g.mem[b:b+uint64(els[i+j].len)]...)
		}
		frames = append(frames, f[NetHdrLen:])
		nbufs = append(nbufs, n)
		i += n
	}
	return frames, nbufs
}

func frame(n int, tag byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = tag + byte(i)
	}
	return f
}

func (g *guest) readISR() uint8 { return uint8(g.r(ISROffset, 1)) }

func (g *guest) String() string {
	return fmt.Sprintf("status %#x stats %+v err %v", g.dev.Status(), g.dev.Stats(), g.dev.Err())
}
