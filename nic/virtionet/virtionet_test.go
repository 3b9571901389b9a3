package virtionet

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/nictest"
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

func open(t *testing.T, qsize, rxq int) (*Device, *vmodel) {
	return openWatchdog(t, qsize, rxq, 0)
}

func openWatchdog(t *testing.T, qsize, rxq int, watchdog time.Duration) (*Device, *vmodel) {
	t.Helper()
	mem, err := dma.NewHost(0x20000000, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	m := newVModel(mem, testMAC)
	d, err := Open(Config{Name: "virtio-net-0", Transport: m.transport(), DMA: mem, IRQ: m.line, QueueSize: qsize, RxQueue: rxq, Watchdog: watchdog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, m
}

func frame(n, seq int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(seq*3 + i)
	}
	return f
}

func receive(t *testing.T, d *Device) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := d.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestOpenNegotiates(t *testing.T) {
	d, m := open(t, 0, 0)
	if d.MAC() != nic.MAC(testMAC) {
		t.Errorf("MAC %x", d.MAC())
	}
	want := uint64(1<<FeatureVersion1 | 1<<FeatureNetMAC | 1<<FeatureNetStatus)
	if m.accepted != want || d.Features() != want {
		t.Errorf("accepted %#x, want %#x (MRG_RXBUF offered, not taken)", m.accepted, want)
	}
	if m.status != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK {
		t.Errorf("status %#x", m.status)
	}
	for i, q := range m.q {
		if !q.enabled || q.size != 256 || q.desc%16 != 0 || q.used%4 != 0 || q.desc == 0 {
			t.Errorf("queue %d: %+v", i, q)
		}
	}
	if m.notifies[rxQueue] != 1 {
		t.Errorf("%d receive notifications after posting the buffers", m.notifies[rxQueue])
	}
}

func TestOpenFailures(t *testing.T) {
	mem, _ := dma.NewHost(0x20000000, 4<<20)
	tests := []struct {
		name  string
		setup func(*vmodel)
	}{
		{"legacy only", func(m *vmodel) { m.offered &^= 1 << FeatureVersion1 }},
		{"no MAC", func(m *vmodel) { m.offered &^= 1 << FeatureNetMAC }},
		{"features refused", func(m *vmodel) { m.refuse = true }},
	}
	for _, tc := range tests {
		m := newVModel(mem, testMAC)
		tc.setup(m)
		free := mem.FreeBytes()
		_, err := Open(Config{Transport: m.transport(), DMA: mem, IRQ: m.line})
		if !errors.Is(err, ErrFeatures) {
			t.Errorf("%s: %v, want ErrFeatures", tc.name, err)
		}
		if m.status&StatusFailed == 0 {
			t.Errorf("%s: status %#x without FAILED", tc.name, m.status)
		}
		if mem.FreeBytes() != free {
			t.Errorf("%s: DMA memory leaked", tc.name)
		}
	}
	m := newVModel(mem, testMAC)
	m.q[1].max = 8
	d, err := Open(Config{Transport: m.transport(), DMA: mem, IRQ: m.line})
	if err != nil || m.q[1].size != 8 {
		t.Errorf("small device queue: %v, size %d", err, m.q[1].size)
	}
	d.Close()
}

func TestTransmitAndReceive(t *testing.T) {
	d, m := open(t, 16, 0)
	for i := 0; i < 100; i++ {
		if err := d.Transmit(frame(60+i, i)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	sent := m.frames()
	if len(sent) != 100 || !bytes.Equal(sent[42], frame(102, 42)) {
		t.Fatalf("device sent %d frames", len(sent))
	}
	for i := 0; i < 100; i++ {
		want := frame(1514-i, i)
		for !m.inject(want) {
			time.Sleep(time.Millisecond) // the driver has not reposted yet
		}
		if got := receive(t, d); !bytes.Equal(got, want) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if c := d.Counters(); c.TxFrames != 100 || c.RxFrames != 100 || c.RxErrors != 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestBadUsedElements: used elements a device should never write (an id
// out of range, a length past the buffer, a runt, a giant) are counted and
// dropped; the good frames around them arrive.
func TestBadUsedElements(t *testing.T) {
	d, m := open(t, 16, 0)
	m.inject(frame(100, 1))
	m.injectRaw(999, 100)               // id never posted
	m.injectRaw(0xFFFF, 2048+1)         // longer than the buffer
	m.injectRaw(0xFFFF, netHdrLen+13)   // runt
	m.inject(frame(1600, 2))            // giant (fits the buffer, not the MTU)
	m.injectRaw(0xFFFF, netHdrLen+1515) // giant by length
	m.inject(frame(100, 3))
	for _, seq := range []int{1, 3} {
		if got := receive(t, d); !bytes.Equal(got, frame(100, seq)) {
			t.Fatalf("frame %d differs", seq)
		}
	}
	if c := d.Counters(); c.RxErrors != 5 || c.RxFrames != 2 {
		t.Errorf("counters %+v, want 5 errors 2 frames", c)
	}
}

func TestBurstLargerThanRing(t *testing.T) {
	d, m := openWatchdog(t, 16, 8, -1)
	m.mu.Lock()
	accepted := 0
	for i := 0; i < 40; i++ {
		id, ok := m.availEntry(rxQueue)
		if !ok {
			break
		}
		b := m.descBuf(rxQueue, id)
		n := copy(b[netHdrLen:], frame(300, i))
		// Complete without raising the line: the burst lands before the
		// driver runs.
		m.completeQuiet(rxQueue, id, uint32(netHdrLen+n))
		accepted++
	}
	m.mu.Unlock()
	if accepted != 16 {
		t.Fatalf("a 16-entry ring took %d frames", accepted)
	}
	d.Service()
	if c := d.Counters(); c.RxFrames != 8 || c.RxDropped != 8 {
		t.Errorf("after the burst %+v, want 8 queued 8 dropped", c)
	}
	for i := 0; i < 8; i++ {
		if got := receive(t, d); !bytes.Equal(got, frame(300, i)) {
			t.Fatalf("queued frame %d differs", i)
		}
	}
	if !m.inject(frame(64, 77)) {
		t.Fatal("no buffer after the driver serviced the burst")
	}
	if got := receive(t, d); !bytes.Equal(got, frame(64, 77)) {
		t.Fatal("frame after the burst differs")
	}
}

func TestTransmitRingFull(t *testing.T) {
	d, m := open(t, 8, 0)
	m.mu.Lock()
	m.txHold = true
	m.mu.Unlock()
	for i := 0; i < 8; i++ {
		if err := d.Transmit(frame(64, i)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := d.Transmit(frame(64, 8)); !errors.Is(err, nic.ErrQueueFull) {
		t.Fatalf("9th frame into 8 descriptors: %v", err)
	}
	m.flushTx()
	select {
	case <-d.TxReady():
	case <-time.After(5 * time.Second):
		t.Fatal("no TxReady")
	}
	if err := d.Transmit(frame(64, 9)); err != nil {
		t.Fatal(err)
	}
	m.flushTx()
	if n := len(m.frames()); n != 9 {
		t.Errorf("device sent %d, want 9", n)
	}
}

func TestLinkAndClose(t *testing.T) {
	d, m := open(t, 0, 0)
	m.setLink(false, true)
	waitLink(t, d, false)
	if err := d.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrLinkDown) {
		t.Errorf("Transmit with link down: %v", err)
	}
	if err := d.Transmit(make([]byte, 1515)); !errors.Is(err, nic.ErrFrameSize) {
		t.Errorf("giant Transmit: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if m.status != 0 {
		t.Errorf("status after Close %#x, want reset", m.status)
	}
	if _, err := d.Receive(context.Background()); !errors.Is(err, nic.ErrClosed) {
		t.Errorf("Receive after Close: %v", err)
	}
}

// TestWatchdogRecoversLostInterrupt: a used element whose interrupt never
// comes is still taken, by the watchdog, which counts a stall.
func TestWatchdogRecoversLostInterrupt(t *testing.T) {
	d, m := openWatchdog(t, 16, 0, 5*time.Millisecond)
	m.mu.Lock()
	id, ok := m.availEntry(rxQueue)
	if !ok {
		t.Fatal("no receive buffer")
	}
	n := copy(m.descBuf(rxQueue, id)[netHdrLen:], frame(200, 4))
	m.completeQuiet(rxQueue, id, uint32(netHdrLen+n)) // no ISR bit, no interrupt
	m.mu.Unlock()
	if got := receive(t, d); !bytes.Equal(got, frame(200, 4)) {
		t.Fatal("frame differs")
	}
	if c := d.Counters(); c.Stalls == 0 {
		t.Errorf("counters %+v: want a stall", c)
	}
}

func TestMSIXVectors(t *testing.T) {
	mem, _ := dma.NewHost(0x20000000, 4<<20)
	m := newVModel(mem, testMAC)
	d, err := Open(Config{Transport: m.transport(), DMA: mem, IRQ: m.line, MSIX: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.q[0].vector != 0 || m.q[1].vector != 0 || m.cfgVector != 0 {
		t.Errorf("queue vectors %#x %#x, configuration %#x, want table entry 0", m.q[0].vector, m.q[1].vector, m.cfgVector)
	}
	if !m.inject(frame(80, 1)) {
		t.Fatal("no receive buffer")
	}
	if got := receive(t, d); !bytes.Equal(got, frame(80, 1)) {
		t.Fatal("frame differs")
	}
	d.Close()

	d, err = Open(Config{Transport: m.transport(), DMA: mem, IRQ: m.line})
	if err != nil {
		t.Fatal(err)
	}
	if m.q[0].vector != noVector {
		t.Errorf("INTx: queue vector %#x, want NO_VECTOR", m.q[0].vector)
	}
	if m.cfgVector != noVector {
		t.Errorf("INTx: configuration vector %#x, want NO_VECTOR", m.cfgVector)
	}
	d.Close()
}

// TestMTU: a driver asked for a large MTU negotiates VIRTIO_NET_F_MTU
// when the device offers it and takes the smaller of the two MTUs; it
// keeps 1500 otherwise, and only asks for the feature when it wants more.
func TestMTU(t *testing.T) {
	for _, c := range []struct {
		name       string
		deviceMTU  uint16 // 0: no VIRTIO_NET_F_MTU
		want, mtu  int
		negotiated bool
		queueSize  int
	}{
		{"standard", 9000, 1500, 1500, false, 256},
		{"jumbo", 9000, 9000, 9000, true, 64},
		{"device smaller", 4000, 9000, 4000, true, 256},
		{"device without the feature", 0, 9000, 1500, false, 256},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem, err := dma.NewHost(0x20000000, 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			m := newVModel(mem, testMAC)
			if c.deviceMTU != 0 {
				m.offered |= 1 << FeatureNetMTU
				m.mtu = c.deviceMTU
			}
			d, err := Open(Config{Name: "virtio-net-0", Transport: m.transport(), DMA: mem, IRQ: m.line, MTU: c.want, Watchdog: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.MTU() != c.mtu || (d.Features()&(1<<FeatureNetMTU) != 0) != c.negotiated {
				t.Fatalf("MTU %d, features %#x; want %d, MTU negotiated %v", d.MTU(), d.Features(), c.mtu, c.negotiated)
			}
			if got := int(m.q[rxQueue].size); got != c.queueSize {
				t.Errorf("queue size %d, want %d", got, c.queueSize)
			}
			full := frame(c.mtu+nic.HeaderLen, 7)
			if err := d.Transmit(full); err != nil {
				t.Fatalf("Transmit of %d bytes: %v", len(full), err)
			}
			if err := d.Transmit(frame(c.mtu+nic.HeaderLen+1, 8)); !errors.Is(err, nic.ErrFrameSize) {
				t.Errorf("Transmit past the MTU: %v", err)
			}
			m.flushTx()
			if sent := m.frames(); len(sent) != 1 || !bytes.Equal(sent[0], full) {
				t.Errorf("device sent %d frames", len(sent))
			}
			if !m.inject(full) {
				t.Fatal("no receive buffer")
			}
			if got := receive(t, d); !bytes.Equal(got, full) {
				t.Fatalf("received %d bytes, want %d", len(got), len(full))
			}
		})
	}
	if _, err := Open(Config{MTU: MaxMTU + 1}); err == nil {
		t.Error("MTU above MaxMTU accepted")
	}
}

func waitLink(t *testing.T, d *Device, up bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); d.LinkUp() != up; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("link never became %v", up)
		}
	}
}

// TestLinkState: the link state follows the device's configuration
// interrupt, or the watchdog's tick when that interrupt is lost, and
// transmitting reads no configuration.
func TestLinkState(t *testing.T) {
	for _, c := range []struct {
		name     string
		watchdog time.Duration
		notify   bool
	}{
		{"interrupt", -1, true},
		{"watchdog", 5 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, m := openWatchdog(t, 0, 0, c.watchdog)
			m.setLink(false, c.notify)
			waitLink(t, d, false)
			if err := d.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrLinkDown) {
				t.Fatalf("Transmit with link down: %v", err)
			}
			m.setLink(true, c.notify)
			waitLink(t, d, true)
			m.mu.Lock()
			before := m.linkReads
			m.mu.Unlock()
			for i := 0; i < 32; i++ {
				if err := d.Transmit(frame(64, i)); err != nil {
					t.Fatal(err)
				}
			}
			m.mu.Lock()
			reads := m.linkReads - before
			m.mu.Unlock()
			if c.watchdog < 0 && reads != 0 {
				t.Errorf("32 frames transmitted with %d link status reads", reads)
			}
		})
	}
}

// TestTransmitBurst: frames sent with more are posted without a
// notification; the burst's last frame, or a call that fails, notifies
// once for all of them.
func TestTransmitBurst(t *testing.T) {
	d, m := open(t, 16, 0)
	notifies := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.notifies[txQueue]
	}
	for i := 0; i < 5; i++ {
		if err := d.TransmitMore(frame(64, i), true); err != nil {
			t.Fatal(err)
		}
	}
	if n := notifies(); n != 0 || len(m.frames()) != 0 {
		t.Fatalf("after 5 frames with more: %d notifications, %d frames sent; want none", n, len(m.frames()))
	}
	if err := d.TransmitMore(frame(64, 5), false); err != nil {
		t.Fatal(err)
	}
	if n := notifies(); n != 1 || len(m.frames()) != 6 {
		t.Fatalf("after the burst's end: %d notifications, %d frames sent; want 1 and 6", n, len(m.frames()))
	}
	d.TransmitMore(frame(64, 6), true)
	if err := d.TransmitMore(make([]byte, 3), true); !errors.Is(err, nic.ErrFrameSize) {
		t.Fatalf("a 3-byte frame: %v", err)
	}
	if n := notifies(); n != 2 || len(m.frames()) != 7 {
		t.Fatalf("after a failed call: %d notifications, %d frames sent; want 2 and 7", n, len(m.frames()))
	}
}

// TestCloseDuringTraffic: Close returns only once no transmit, no
// service pass and no watchdog look uses the rings, and none touches
// them afterwards (nictest.CloseDuringTraffic). The watchdog looks every
// 50 µs, so that it too is reading the rings when Close comes.
func TestCloseDuringTraffic(t *testing.T) {
	d, m := openWatchdog(t, 64, 0, 50*time.Microsecond)
	mem, err := m.mem.Slice(m.mem.Base(), m.mem.Size())
	if err != nil {
		t.Fatal(err)
	}
	nictest.CloseDuringTraffic(t, d, mem, func() { m.inject(frame(100, 1)) }, frame(100, 0))
}
