package virtionet

import (
	"encoding/binary"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// countingMemory counts guest memory accesses: the device's work. It
// also notes which rings' available or used index a write other than
// the device's own index update overwrote: a random descriptor can point
// a receive buffer at a ring, and the frame the device then writes there
// is the guest's doing, not the device using more chains than offered.
type countingMemory struct {
	virtio.ByteMemory
	n         int
	clobbered map[uint64]bool // by ring base
}

func (m *countingMemory) ReadAt(p []byte, a uint64) error {
	m.n++
	return m.ByteMemory.ReadAt(p, a)
}

func (m *countingMemory) WriteAt(p []byte, a uint64) error {
	m.n++
	for _, ring := range []uint64{rxRing, txRing} {
		idx := a == ring+0x202 && len(p) == 2 // the device's Publish
		if !idx && a < ring+0x204 && a+uint64(len(p)) > ring+0x100 {
			if m.clobbered == nil {
				m.clobbered = map[uint64]bool{}
			}
			m.clobbered[ring] = true
		}
	}
	return m.ByteMemory.WriteAt(p, a)
}

// fuzzHeld is the held-frame bound in FuzzDescriptors.
const fuzzHeld = 8

// maxWork bounds the memory accesses of one notification or Receive:
// per held frame, a queue's worth of chains of a queue's worth of
// descriptors, each read once and its buffer read or written once, plus
// ring indices and used entries.
const maxWork = (fuzzHeld + 1) * (8 + qsize*(3+2*qsize))

// FuzzDescriptors gives the device random descriptor tables and
// available rings on both queues: it must never panic, do bounded work
// per notification, and either refuse (DEVICE_NEEDS_RESET) or use no
// more chains than the guest made available.
func FuzzDescriptors(f *testing.F) {
	seed := make([]byte, 2*(qsize*16+4+2*qsize)+1)
	seed[0] = 3
	f.Add(seed)
	loop := append([]byte{}, seed...)
	binary.LittleEndian.PutUint16(loop[1+12:], virtio.DescFNext)
	binary.LittleEndian.PutUint16(loop[1+qsize*16+2:], 1)
	f.Add(loop)
	// A working setup: four receive buffers, one 60-byte frame to send.
	good := append([]byte{}, seed...)
	le := binary.LittleEndian
	for i := 0; i < 4; i++ {
		d := good[1+16*i:]
		le.PutUint64(d, rxBufs+uint64(i)*bufStride)
		le.PutUint32(d[8:], 2048)
		le.PutUint16(d[12:], virtio.DescFWrite)
		le.PutUint16(good[1+qsize*16+4+2*i:], uint16(i))
	}
	le.PutUint16(good[1+qsize*16+2:], 4)
	tx := good[1+qsize*16+4+2*qsize:]
	le.PutUint64(tx, txBufs)
	le.PutUint32(tx[8:], NetHdrLen+60)
	le.PutUint16(tx[qsize*16+2:], 1)
	f.Add(good)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		flags, in := in[0], in[1:]
		cm := &countingMemory{ByteMemory: make(virtio.ByteMemory, memSize)}
		g := newGuest(t, Options{MaxHeld: fuzzHeld, NoMergeable: flags&8 != 0})
		dev, err := New(cm, BackendFunc(func(seq uint64, fr []byte) { g.sent = append(g.sent, sent{seq, fr}) }), Options{MaxHeld: fuzzHeld, NoMergeable: flags&8 != 0})
		if err != nil {
			t.Fatal(err)
		}
		g.mem, g.dev = cm.ByteMemory, dev
		dev.ConnectINTx(g.line)
		feats := uint64(baseFeatures)
		if flags&8 == 0 {
			feats |= 1 << FMrgRxBuf
		}
		g.init(feats)
		for _, ring := range []uint64{rxRing, txRing} {
			n := copy(g.mem[ring:ring+qsize*16], in)
			in = in[n:]
			for i := uint64(0); i < qsize; i++ {
				d := g.mem[ring+16*i:]
				if flags&1 != 0 { // keep addresses in RAM to reach deeper
					binary.LittleEndian.PutUint64(d, binary.LittleEndian.Uint64(d)%memSize)
				}
				if flags&2 != 0 {
					binary.LittleEndian.PutUint32(d[8:], binary.LittleEndian.Uint32(d[8:])%4096)
				}
			}
			n = copy(g.mem[ring+0x100:ring+0x100+4+2*qsize], in)
			in = in[n:]
		}
		step := func(what string, do func()) {
			cm.n = 0
			do()
			if cm.n > maxWork {
				t.Fatalf("%s: %d memory accesses, bound %d", what, cm.n, maxWork)
			}
		}
		step("transmit notify", func() { g.notify(TxQueue) })
		for i := 0; i < fuzzHeld+2; i++ {
			step("receive", func() { dev.Receive(frame(60+200*i, byte(i))) })
		}
		step("receive notify", func() { g.notify(RxQueue) })
		if dev.Status()&virtio.StatusDeviceNeedsReset != 0 {
			return
		}
		for _, q := range []struct {
			ring uint64
			n    uint64
		}{{txRing, dev.TxSeq()}, {rxRing, dev.Stats().RxFrames}} {
			if cm.clobbered[q.ring] {
				continue // a buffer on the ring: its indices are frame bytes
			}
			avail := g.get16(q.ring + 0x102)
			used := g.get16(q.ring + 0x202)
			if used > avail || q.n > uint64(used) {
				t.Fatalf("ring %#x: used %d, available %d, frames %d", q.ring, used, avail, q.n)
			}
		}
	})
}
