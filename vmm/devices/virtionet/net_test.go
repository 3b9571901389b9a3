package virtionet

import (
	"bytes"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

func TestPCIIdentityAndCapabilities(t *testing.T) {
	g := newGuest(t, Options{})
	var pirq [4]devices.Line
	lines := [4]*devtestLine{}
	for i := range pirq {
		lines[i] = &devtestLine{}
		pirq[i] = lines[i]
	}
	bus := pci.NewBus(pirq)
	if err := bus.Add(3, 0, g.dev); err != nil {
		t.Fatal(err)
	}
	cfg := func(reg, size int) uint32 {
		bus.PortOut(0, 4, pci.AddrEnable|3<<11|uint32(reg&^3))
		return bus.PortIn(uint16(4+reg&3), size)
	}
	for _, c := range []struct {
		name      string
		reg, size int
		want      uint32
	}{
		{"vendor", pci.VendorIDOffset, 2, 0x1AF4},
		{"device", pci.DeviceIDOffset, 2, 0x1041},
		{"revision", pci.RevisionOffset, 1, 1},
		{"class", pci.ClassOffset + 1, 2, 0x0200},
		{"subsystem vendor", pci.SubsysVendorOffset, 2, 0x1AF4},
		{"interrupt pin", pci.InterruptPinOffset, 1, 1},
	} {
		if got := cfg(c.reg, c.size); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
	if s := cfg(pci.SubsysIDOffset, 2); s < 0x40 {
		t.Errorf("subsystem ID %#x under 0x40 (4.1.2.1)", s)
	}
	bus.PortOut(0, 4, pci.AddrEnable|3<<11|pci.BAR0Offset)
	bus.PortOut(4, 4, 0xFFFFFFFF)
	if got := bus.PortIn(4, 4); got != ^uint32(BARSize-1) {
		t.Errorf("BAR0 sizing reads %#x, want %#x", got, ^uint32(BARSize-1))
	}
	// Walk the capability list as virtio_pci_modern does.
	type vcap struct {
		bar              uint8
		offset, length   uint32
		capLen, notifyOf uint32
	}
	found := map[uint8]vcap{}
	for p := cfg(pci.CapabilitiesOffset, 1); p != 0; p = cfg(int(p)+1, 1) {
		if cfg(int(p), 1) != virtio.CapVendor {
			continue
		}
		typ := uint8(cfg(int(p)+3, 1))
		c := vcap{bar: uint8(cfg(int(p)+4, 1)), offset: cfg(int(p)+8, 4), length: cfg(int(p)+12, 4), capLen: cfg(int(p)+2, 1)}
		if typ == virtio.PCICapNotifyCfg {
			c.notifyOf = cfg(int(p)+16, 4)
		}
		found[typ] = c
	}
	want := map[uint8]vcap{
		virtio.PCICapCommonCfg: {0, CommonOffset, virtio.CommonCfgLen, 16, 0},
		virtio.PCICapNotifyCfg: {0, NotifyOffset, 2 * NotifyMultiplier, 20, NotifyMultiplier},
		virtio.PCICapISRCfg:    {0, ISROffset, 1, 16, 0},
		virtio.PCICapDeviceCfg: {0, DeviceOffset, netConfigLen, 16, 0},
		virtio.PCICapPCICfg:    {0, 0, 0, 20, 0},
	}
	for typ, w := range want {
		if got, ok := found[typ]; !ok || got != w {
			t.Errorf("capability type %d: %+v (present %v), want %+v", typ, got, ok, w)
		}
	}
	// INTx reaches PIRQ (3 + 1 - 1) mod 4 = D.
	g.dev.SetLink(false) // no DRIVER_OK: no interrupt
	if lines[3].high {
		t.Error("configuration interrupt before DRIVER_OK")
	}
	g.init(baseFeatures)
	g.dev.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|pci.CommandBusMaster)
	g.dev.SetLink(true)
	if !lines[pci.Swizzle(3, 1)].high {
		t.Error("INTA# of 03.0 did not reach PIRQD")
	}
}

type devtestLine struct{ high bool }

func (l *devtestLine) Set(h bool) { l.high = h }

func TestFeatureNegotiation(t *testing.T) {
	g := newGuest(t, Options{})
	g.w(virtio.CommonDeviceFeatureSelect, 4, 0)
	lo := g.r(virtio.CommonDeviceFeature, 4)
	g.w(virtio.CommonDeviceFeatureSelect, 4, 1)
	hi := g.r(virtio.CommonDeviceFeature, 4)
	if want := uint64(baseFeatures | 1<<FMrgRxBuf); hi<<32|lo != want {
		t.Fatalf("device features %#x, want %#x", hi<<32|lo, want)
	}
	g.w(virtio.CommonDeviceFeatureSelect, 4, 2)
	if v := g.r(virtio.CommonDeviceFeature, 4); v != 0 {
		t.Errorf("feature word 2 reads %#x", v)
	}
	if g.negotiate(1<<FMAC | 1<<FStatus) {
		t.Error("FEATURES_OK without VERSION_1 accepted by a modern-only device")
	}
	if g.negotiate(baseFeatures | 1<<17) { // VIRTIO_NET_F_CTRL_VQ, not offered
		t.Error("FEATURES_OK with an unoffered feature accepted")
	}
	if !g.negotiate(baseFeatures) {
		t.Fatal("offered features refused")
	}
	g.w(virtio.CommonDriverFeatureSelect, 4, 0)
	g.w(virtio.CommonDriverFeature, 4, 1<<FMrgRxBuf)
	if v := g.r(virtio.CommonDriverFeature, 4); v != baseFeatures&0xFFFFFFFF {
		t.Errorf("driver features changed after FEATURES_OK: %#x", v)
	}
	if g.r(virtio.CommonMSIXConfig, 2) != virtio.MSINoVector || g.r(virtio.CommonNumQueues, 2) != 2 {
		t.Error("msix_config or num_queues")
	}
	g.w(virtio.CommonQueueMSIXVector, 2, 0)
	if g.r(virtio.CommonQueueMSIXVector, 2) != virtio.MSINoVector {
		t.Error("a queue vector was mapped without MSI-X")
	}
	g.w(virtio.CommonQueueSelect, 2, 5)
	if g.r(virtio.CommonQueueSize, 2) != 0 {
		t.Error("absent queue has a size")
	}
	g.setStatus(0)
	if g.status() != 0 || g.r(virtio.CommonQueueSelect, 2) != 0 {
		t.Error("reset left state")
	}
}

func TestDeviceConfig(t *testing.T) {
	mac := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	g := newGuest(t, Options{MAC: mac})
	for i, b := range mac {
		if got := g.r(DeviceOffset+uint64(i), 1); got != uint64(b) {
			t.Errorf("mac[%d] = %#x", i, got)
		}
	}
	if g.r(DeviceOffset+cfgStatusOff, 2) != StatusLinkUp {
		t.Error("link not up")
	}
	g.init(baseFeatures)
	gen := g.r(virtio.CommonConfigGeneration, 1)
	g.dev.SetLink(false)
	if g.r(DeviceOffset+cfgStatusOff, 2) != 0 || g.r(virtio.CommonConfigGeneration, 1) == gen {
		t.Error("link down not shown, or generation unchanged")
	}
	if isr := g.readISR(); isr != virtio.ISRConfig || g.line.High {
		t.Errorf("ISR %#x after a configuration change, line %v after reading it", isr, g.line.High)
	}
	g.w(DeviceOffset, 1, 0xFF)
	if g.r(DeviceOffset, 1) != uint64(mac[0]) {
		t.Error("device configuration writable")
	}
}

func TestTransmit(t *testing.T) {
	g := newGuest(t, Options{})
	g.init(baseFeatures)
	frames := [][]byte{frame(60, 1), frame(1514, 2), frame(14, 3)}
	for _, f := range frames {
		g.send(f)
	}
	if len(g.sent) != 3 {
		t.Fatalf("%d frames sent, want 3 (%v)", len(g.sent), g)
	}
	for i, s := range g.sent {
		if s.seq != uint64(i+1) || !bytes.Equal(s.frame, frames[i]) {
			t.Errorf("frame %d: seq %d, %d bytes", i, s.seq, len(s.frame))
		}
	}
	used := g.used(txRing, 0)
	if len(used) != 3 || used[0] != (usedElem{0, 0}) || used[2] != (usedElem{2, 0}) {
		t.Errorf("used ring %v", used)
	}
	if !g.line.High {
		t.Fatal("no interrupt after transmit")
	}
	if isr := g.readISR(); isr != virtio.ISRQueue {
		t.Errorf("ISR %#x", isr)
	}
	if g.line.High || g.readISR() != 0 {
		t.Error("reading the ISR did not clear it")
	}
	// A header and frame split over two readable descriptors.
	buf := uint64(txBufs + 0x8000)
	copy(g.mem[buf+NetHdrLen:], frame(100, 9))
	g.putDesc(txRing, 5, buf, NetHdrLen, virtio.DescFNext, 6)
	g.putDesc(txRing, 6, buf+NetHdrLen, 100, 0, 0)
	g.makeAvail(txRing, &g.txIdx, 5)
	g.notify(TxQueue)
	if len(g.sent) != 4 || g.sent[3].seq != 4 || !bytes.Equal(g.sent[3].frame, frame(100, 9)) {
		t.Errorf("chained frame not sent as one: %d frames", len(g.sent))
	}
	// Sequence numbers go on across a device reset.
	g.init(baseFeatures)
	g.send(frame(60, 4))
	if g.dev.TxSeq() != 5 || g.sent[4].seq != 5 {
		t.Errorf("sequence after reset: %d", g.dev.TxSeq())
	}
}

func TestTransmitNoInterruptHint(t *testing.T) {
	g := newGuest(t, Options{})
	g.init(baseFeatures)
	g.put16(txRing+0x100, virtio.AvailFNoInterrupt)
	g.send(frame(60, 1))
	if len(g.sent) != 1 || g.line.High {
		t.Errorf("sent %d, line %v with VIRTQ_AVAIL_F_NO_INTERRUPT", len(g.sent), g.line.High)
	}
}

func TestReceive(t *testing.T) {
	for _, merge := range []bool{false, true} {
		g := newGuest(t, Options{NoMergeable: !merge})
		feats := uint64(baseFeatures)
		if merge {
			feats |= 1 << FMrgRxBuf
		}
		g.init(feats)
		if !g.dev.Receive(frame(60, 1)) || g.dev.Held() != 1 {
			t.Fatal("frame not held while there are no buffers")
		}
		g.postRx(4, 1526)
		got, n := g.received()
		if len(got) != 1 || !bytes.Equal(got[0], frame(60, 1)) || n[0] != 1 {
			t.Fatalf("merge %v: received %d frames %v", merge, len(got), n)
		}
		if u := g.used(rxRing, 0); u[0].len != NetHdrLen+60 {
			t.Errorf("used length %d", u[0].len)
		}
		if g.readISR() != virtio.ISRQueue {
			t.Error("no used-buffer interrupt")
		}
		g.dev.Receive(frame(1514, 2))
		g.dev.Receive(frame(200, 3))
		got, _ = g.received()
		if len(got) != 2 || !bytes.Equal(got[0], frame(1514, 2)) || !bytes.Equal(got[1], frame(200, 3)) {
			t.Errorf("merge %v: second batch %d frames", merge, len(got))
		}
	}
}

func TestReceiveMergeable(t *testing.T) {
	g := newGuest(t, Options{})
	g.init(baseFeatures | 1<<FMrgRxBuf)
	g.postRx(8, 512)
	f := frame(1400, 7)
	g.dev.Receive(f)
	got, n := g.received()
	if len(got) != 1 || n[0] != 3 || !bytes.Equal(got[0], f) {
		t.Fatalf("got %d frames, num_buffers %v", len(got), n)
	}
	u := g.used(rxRing, 0)
	if len(u) != 3 || u[0].len != 512 || u[1].len != 512 || u[2].len != NetHdrLen+1400-1024 {
		t.Errorf("used %v", u)
	}
	// 5 buffers of 512 left: a 3000-byte frame waits for more.
	g.dev.Receive(frame(3000, 1))
	if g.dev.Held() != 1 || len(g.used(rxRing, 3)) != 0 {
		t.Fatalf("frame taken with too few buffers: held %d", g.dev.Held())
	}
	g.postRx(2, 512)
	if got, n := g.received(); len(got) != 1 || n[0] != 6 {
		t.Errorf("after more buffers: %d frames %v", len(got), n)
	}
}

func TestReceiveTooSmallDropped(t *testing.T) {
	g := newGuest(t, Options{NoMergeable: true})
	g.init(baseFeatures)
	g.postRx(2, 100)
	g.dev.Receive(frame(200, 1))
	g.dev.Receive(frame(50, 2))
	got, _ := g.received()
	if len(got) != 1 || !bytes.Equal(got[0], frame(50, 2)) || g.dev.Stats().RxDroppedSmall != 1 {
		t.Errorf("got %d frames, stats %+v", len(got), g.dev.Stats())
	}
}

func TestReceiveLimits(t *testing.T) {
	g := newGuest(t, Options{MaxHeld: 2})
	if g.dev.Receive(frame(60, 0)) || g.dev.Stats().RxDroppedNotReady != 1 {
		t.Error("frame taken before DRIVER_OK")
	}
	g.init(baseFeatures)
	if g.dev.Receive(make([]byte, MaxFrameLen+1)) || g.dev.Stats().RxDroppedOversize != 1 {
		t.Error("oversize frame taken")
	}
	g.dev.Receive(frame(60, 1))
	g.dev.Receive(frame(60, 2))
	if g.dev.Receive(frame(60, 3)) || g.dev.Stats().RxDroppedFull != 1 || g.dev.Held() != 2 {
		t.Errorf("held queue not bounded: %+v", g.dev.Stats())
	}
	g.setStatus(0)
	if g.dev.Held() != 0 {
		t.Error("reset kept held frames")
	}
}

func TestQuiesce(t *testing.T) {
	g := newGuest(t, Options{MaxHeld: 4})
	g.init(baseFeatures | 1<<FMrgRxBuf)
	g.postRx(8, 1526)
	g.dev.Quiesce(true)
	for i := 0; i < 6; i++ {
		g.dev.Receive(frame(100, byte(i)))
	}
	g.postRx(2, 1526) // a notify while quiesced delivers nothing either
	if got, _ := g.received(); len(got) != 0 || g.line.High || g.readISR() != 0 {
		t.Fatalf("quiesced device reported %d packets, line %v", len(got), g.line.High)
	}
	if g.dev.Held() != 4 || g.dev.Stats().RxDroppedFull != 2 {
		t.Errorf("held %d, dropped %d", g.dev.Held(), g.dev.Stats().RxDroppedFull)
	}
	// Transmit is not quiesced: output commit holds it above.
	g.send(frame(60, 9))
	if len(g.sent) != 1 {
		t.Error("transmit stopped by quiesce")
	}
	g.readISR()
	g.dev.Quiesce(false)
	got, _ := g.received()
	if len(got) != 4 || g.dev.Held() != 0 || !g.line.High {
		t.Fatalf("after quiesce: %d frames, held %d", len(got), g.dev.Held())
	}
	for i, f := range got {
		if !bytes.Equal(f, frame(100, byte(i))) {
			t.Errorf("frame %d out of order", i)
		}
	}
}

func TestBusMaster(t *testing.T) {
	g := newGuest(t, Options{})
	g.init(baseFeatures)
	g.dev.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory)
	g.send(frame(60, 1))
	if len(g.sent) != 0 {
		t.Fatal("DMA without Bus Master")
	}
	g.dev.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|pci.CommandBusMaster)
	if len(g.sent) != 1 {
		t.Error("posted frame not sent when Bus Master was set")
	}
}

func TestPCIConfigAccess(t *testing.T) {
	g := newGuest(t, Options{MAC: [6]byte{1, 2, 3, 4, 5, 6}})
	base := g.dev.pciCap
	g.dev.WriteConfig(base+pciCfgFirst+pciCfgOffsetOff, 4, DeviceOffset+4)
	g.dev.WriteConfig(base+pciCfgFirst+pciCfgLengthOff, 4, 2)
	if v := g.dev.ReadConfig(base+pciCfgFirst+pciCfgDataOff, 4); v != 0x0605 {
		t.Errorf("pci_cfg_data read %#x, want 0x0605", v)
	}
	g.dev.WriteConfig(base+pciCfgFirst+pciCfgOffsetOff, 4, virtio.CommonDeviceStatus)
	g.dev.WriteConfig(base+pciCfgFirst+pciCfgLengthOff, 4, 1)
	g.dev.WriteConfig(base+pciCfgFirst+pciCfgDataOff, 1, virtio.StatusAcknowledge)
	if g.status() != virtio.StatusAcknowledge {
		t.Errorf("status %#x after a write through pci_cfg_data", g.status())
	}
	if g.dev.ReadConfig(base+pciCfgFirst+pciCfgOffsetOff, 4) != virtio.CommonDeviceStatus {
		t.Error("cap.offset does not read back")
	}
	g.dev.WriteConfig(base+pciCfgFirst+1, 1, 0xFF)
	if g.dev.ReadConfig(base+pciCfgFirst+1, 1) != 0 {
		t.Error("capability id writable")
	}
}
