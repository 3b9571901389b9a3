package e1000

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func open(t *testing.T, preload bool, rxq int) (*Device, *model) {
	return openWatchdog(t, preload, rxq, 0)
}

func openWatchdog(t *testing.T, preload bool, rxq int, watchdog time.Duration) (*Device, *model) {
	t.Helper()
	mem, err := dma.NewHost(0x10000000, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(mem, testMAC, preload)
	d, err := Open(Config{Name: "e1000-0", Regs: m, DMA: mem, IRQ: m.line, RxRing: 64, TxRing: 64, RxQueue: rxq, Watchdog: watchdog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, m
}

func frame(n int, seq int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], testMAC[:])
	f[12], f[13] = 0x88, 0xb5
	for i := 14; i < n; i++ {
		f[i] = byte(seq + i)
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

// waitFor polls cond: the interrupt goroutine works asynchronously.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestOpenProgramsDevice(t *testing.T) {
	for _, preload := range []bool{true, false} {
		t.Run(fmt.Sprintf("preloaded=%v", preload), func(t *testing.T) {
			d, m := open(t, preload, 0)
			if d.MAC() != nic.MAC(testMAC) {
				t.Errorf("MAC %x, want %x", d.MAC(), testMAC)
			}
			if m.resets != 1 {
				t.Errorf("%d resets", m.resets)
			}
			if rah := m.reg(RAH0); rah&(1<<31) == 0 || uint16(rah) != 0x5634 {
				t.Errorf("RAH0 %#x", rah)
			}
			checks := []struct {
				name      string
				off, want uint32
			}{
				{"RCTL", RCTL, RctlEN | RctlBAM | RctlSECRC},
				{"RDLEN", RDLEN, 64 * 16},
				{"RDT", RDT, 63},
				{"TDLEN", TDLEN, 64 * 16},
				{"TCTL.EN", TCTL, m.reg(TCTL) | TctlEN},
				{"IMS", IMS, IntLSC | IntRXT0 | IntRXDMT0 | IntRXO | IntRXSEQ | IntTXDW},
				{"CTRL.SLU", CTRL, m.reg(CTRL) | CtrlSLU},
			}
			for _, c := range checks {
				if got := m.reg(c.off); got != c.want {
					t.Errorf("%s = %#x, want %#x", c.name, got, c.want)
				}
			}
			if rdba := uint64(m.reg(RDBAH))<<32 | uint64(m.reg(RDBAL)); rdba%128 != 0 || rdba < 0x10000000 {
				t.Errorf("RDBA %#x", rdba)
			}
		})
	}
}

func TestTransmitAndReceive(t *testing.T) {
	d, m := open(t, true, 0)
	for i := 0; i < 200; i++ { // more than the ring: descriptors are reused
		if err := d.Transmit(frame(60+i, i)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	sent := m.frames()
	if len(sent) != 200 || !bytes.Equal(sent[199], frame(259, 199)) {
		t.Fatalf("model saw %d frames", len(sent))
	}
	for i := 0; i < 200; i++ {
		want := frame(1514-i, i)
		if !m.inject(want, 0, true) {
			// The driver has not returned descriptors yet: let it catch up.
			waitFor(t, "a free receive descriptor", func() bool { return m.inject(want, 0, true) })
		}
		if got := receive(t, d); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	c := d.Counters()
	if c.TxFrames != 200 || c.RxFrames != 200 || c.RxErrors != 0 || c.Interrupts == 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestBadFramesDropped: the done-when list of issue 9: a bad checksum, a
// runt, a giant and a descriptor the device marks bad are counted and
// dropped, and the frames around them arrive intact.
func TestBadFramesDropped(t *testing.T) {
	d, m := open(t, true, 0)
	good := func(i int) []byte { return frame(100, i) }
	steps := []struct {
		name  string
		frame []byte
		errs  uint8
		eop   bool
		bad   bool
	}{
		{"good", good(1), 0, true, false},
		{"CRC error", good(2), RxErrCE, true, true},
		{"symbol error", good(3), RxErrSE, true, true},
		{"data error", good(4), RxErrRXE, true, true},
		{"IP checksum only (offload off: kept)", good(5), RxErrIPE, true, false},
		{"runt", frame(60, 6)[:10], 0, true, true},
		{"giant in one descriptor", frame(1600, 7), 0, true, true},
		{"giant first piece", frame(2000, 8), 0, false, true},
		{"giant last piece", frame(200, 9), 0, true, false}, // counted with its first piece
		{"good after", good(10), 0, true, false},
	}
	var want [][]byte
	errors := 0
	for _, s := range steps {
		if !m.inject(s.frame, s.errs, s.eop) {
			t.Fatalf("%s: ring full", s.name)
		}
		if s.bad {
			errors++
		} else if s.eop && s.name != "giant last piece" {
			want = append(want, s.frame)
		}
	}
	for i, w := range want {
		if got := receive(t, d); !bytes.Equal(got, w) {
			t.Fatalf("frame %d: got %x..., want %x...", i, got[:16], w[:16])
		}
	}
	waitFor(t, "all descriptors returned", func() bool { return m.reg(RDT) == uint32(len(steps)-1) })
	if c := d.Counters(); c.RxErrors != uint64(errors) || c.RxFrames != uint64(len(want)) {
		t.Errorf("RxErrors %d RxFrames %d, want %d and %d", c.RxErrors, c.RxFrames, errors, len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if f, err := d.Receive(ctx); err == nil {
		t.Errorf("extra frame delivered: %x", f[:16])
	}
}

// TestBurstLargerThanRing: with the interrupt goroutine held off, a burst
// fills the ring (the device counts the rest as missed) and the receive
// queue overflows (the driver counts RxDropped); afterwards frames flow
// normally.
func TestBurstLargerThanRing(t *testing.T) {
	d, m := openWatchdog(t, true, 16, -1)
	m.mu.Lock()
	m.regs[IMS] = 0 // the line stays quiet: nothing serviced yet
	m.mu.Unlock()
	accepted := 0
	for i := 0; i < 100; i++ {
		if m.inject(frame(500, i), 0, true) {
			accepted++
		}
	}
	if accepted != 63 {
		t.Fatalf("ring of 64 accepted %d frames, want 63 (one descriptor stays with software)", accepted)
	}
	if mpc := m.reg(MPC); mpc != 37 {
		t.Errorf("device missed %d, want 37", mpc)
	}
	d.Service()
	c := d.Counters()
	if c.RxFrames != 16 || c.RxDropped != 47 {
		t.Errorf("after the burst: RxFrames %d RxDropped %d, want 16 and 47", c.RxFrames, c.RxDropped)
	}
	if d.HW().Missed.Load() != 37 {
		t.Errorf("missed counter %d", d.HW().Missed.Load())
	}
	for i := 0; i < 16; i++ {
		if got := receive(t, d); !bytes.Equal(got, frame(500, i)) {
			t.Fatalf("queued frame %d differs", i)
		}
	}
	m.mu.Lock()
	m.regs[IMS] = IntRXT0
	m.mu.Unlock()
	if !m.inject(frame(64, 99), 0, true) {
		t.Fatal("ring still full after the driver serviced it")
	}
	if got := receive(t, d); !bytes.Equal(got, frame(64, 99)) {
		t.Fatal("frame after the burst differs")
	}
}

func TestTransmitRingFull(t *testing.T) {
	d, m := open(t, true, 0)
	m.mu.Lock()
	m.txHold = true
	m.mu.Unlock()
	for i := 0; i < 63; i++ {
		if err := d.Transmit(frame(64, i)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := d.Transmit(frame(64, 63)); !errors.Is(err, nic.ErrQueueFull) {
		t.Fatalf("64th frame: %v, want ErrQueueFull", err)
	}
	if c := d.Counters(); c.TxQueueFull != 1 || c.TxFrames != 63 {
		t.Errorf("counters %+v", c)
	}
	m.complete()
	select {
	case <-d.TxReady():
	case <-time.After(5 * time.Second):
		t.Fatal("no TxReady after the device finished the ring")
	}
	if err := d.Transmit(frame(64, 64)); err != nil {
		t.Fatalf("after TxReady: %v", err)
	}
	m.complete()
	if n := len(m.frames()); n != 64 {
		t.Errorf("device sent %d frames, want 64", n)
	}
}

func TestLinkAndSizes(t *testing.T) {
	d, m := open(t, true, 0)
	if !d.LinkUp() {
		t.Error("link down after open")
	}
	for _, n := range []int{0, 13, 1515, 3000} {
		if err := d.Transmit(make([]byte, n)); !errors.Is(err, nic.ErrFrameSize) {
			t.Errorf("Transmit of %d bytes: %v", n, err)
		}
	}
	m.setLink(false)
	waitLink(t, d, false)
	if err := d.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrLinkDown) {
		t.Errorf("Transmit with link down: %v", err)
	}
	m.setLink(true)
	waitLink(t, d, true)
	if err := d.Transmit(frame(64, 0)); err != nil {
		t.Errorf("Transmit with link up again: %v", err)
	}
	d.Close()
	if err := d.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrClosed) {
		t.Errorf("Transmit after Close: %v", err)
	}
	if _, err := d.Receive(context.Background()); !errors.Is(err, nic.ErrClosed) {
		t.Errorf("Receive after Close: %v", err)
	}
}

// TestTransmitMore: a burst sent with more costs one TDT write, at its
// last frame or at the first frame that fails (a bad size, a full ring),
// and the device sends every frame queued, in order.
func TestTransmitMore(t *testing.T) {
	for _, c := range []struct {
		name   string
		frames int // sent with more, but for the last
		bad    int // index of a frame of a bad size (-1: none)
		full   bool
		tdt    int // TDT writes expected
	}{
		{"burst", 5, -1, false, 1},
		{"one", 1, -1, false, 1},
		{"bad size mid-burst", 4, 2, false, 2},
		// The device takes nothing, so the 64-slot ring (one slot stays
		// empty) refuses the 64th frame; the caller stops there.
		{"ring full mid-burst", 70, -1, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, m := openWatchdog(t, true, 0, -1)
			m.mu.Lock()
			m.txHold = c.full
			start := len(m.writes)
			m.mu.Unlock()
			var sent [][]byte
			for i := 0; i < c.frames; i++ {
				n := 64 + 100*(i%10)
				if i == c.bad {
					n = 3000
				}
				f := frame(n, i)
				err := d.TransmitMore(f, i < c.frames-1)
				if i == c.bad {
					if !errors.Is(err, nic.ErrFrameSize) {
						t.Fatalf("frame %d of %d bytes: %v", i, n, err)
					}
				} else if errors.Is(err, nic.ErrQueueFull) && c.full {
					if len(sent) != 63 {
						t.Fatalf("ring full after %d frames, want 63", len(sent))
					}
					break
				} else if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				} else {
					sent = append(sent, f)
				}
				if err != nil {
					if got := d.regs.Read32(TDT); got != uint32(len(sent)) {
						t.Errorf("TDT %d after the failure, want %d: queued frames left untold", got, len(sent))
					}
				}
			}
			m.mu.Lock()
			tdt := 0
			for _, off := range m.writes[start:] {
				if off == TDT {
					tdt++
				}
			}
			m.mu.Unlock()
			if tdt != c.tdt {
				t.Errorf("%d TDT writes, want %d", tdt, c.tdt)
			}
			if c.full {
				m.complete()
			}
			got := m.frames()
			if len(got) != len(sent) {
				t.Fatalf("device sent %d frames, want %d", len(got), len(sent))
			}
			for i := range got {
				if !bytes.Equal(got[i], sent[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}
		})
	}
}

// waitLink waits up to 5 s for the driver to report the link up or down.
func waitLink(t *testing.T, d *Device, up bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); d.LinkUp() != up; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("LinkUp() still %v 5 s after the link changed", !up)
		}
	}
}

// TestLinkState: the driver learns of link changes from the LSC
// interrupt, or from the watchdog's tick when the interrupt is lost, and
// transmitting reads no register for it.
func TestLinkState(t *testing.T) {
	for _, c := range []struct {
		name     string
		watchdog time.Duration
		lostLSC  bool
	}{
		{"interrupt", -1, false},
		{"watchdog", 5 * time.Millisecond, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, m := openWatchdog(t, true, 0, c.watchdog)
			if c.lostLSC {
				m.mu.Lock()
				m.regs[IMS] &^= IntLSC
				m.mu.Unlock()
			}
			m.setLink(false)
			waitLink(t, d, false)
			m.setLink(true)
			waitLink(t, d, true)
			m.mu.Lock()
			before := m.statusReads
			m.mu.Unlock()
			for i := 0; i < 32; i++ {
				if err := d.Transmit(frame(64, i)); err != nil {
					t.Fatal(err)
				}
			}
			m.mu.Lock()
			reads := m.statusReads - before
			m.mu.Unlock()
			if c.watchdog < 0 && reads != 0 {
				t.Errorf("32 frames transmitted with %d STATUS reads", reads)
			}
		})
	}
}

// TestWatchdogRecoversLostInterrupt: with the device's interrupt masked
// (as if the line were lost), received frames and finished transmissions
// are still serviced by the watchdog, which counts stalls.
func TestWatchdogRecoversLostInterrupt(t *testing.T) {
	d, m := openWatchdog(t, true, 0, 5*time.Millisecond)
	m.mu.Lock()
	m.regs[IMS] = 0
	m.mu.Unlock()
	if !m.inject(frame(100, 5), 0, true) {
		t.Fatal("ring full")
	}
	if got := receive(t, d); !bytes.Equal(got, frame(100, 5)) {
		t.Fatal("frame differs")
	}
	if c := d.Counters(); c.Stalls == 0 || c.Interrupts != 0 {
		t.Errorf("counters %+v: want stalls and no interrupts", c)
	}
}

func TestBufSizeFor(t *testing.T) {
	for _, c := range []struct {
		mtu, size int
		lpe       bool
	}{
		{1500, 2048, false},
		{576, 2048, false},
		{1501, 4096, true},
		{4096 - 22, 4096, true},
		{4096 - 21, 8192, true},
		{9000, 16384, true},
		{MaxMTU, 16384, true},
	} {
		size, rctl := bufSizeFor(c.mtu)
		if size != c.size || rxBufSize(rctl) != c.size || (rctl&RctlLPE != 0) != c.lpe {
			t.Errorf("MTU %d: buffer %d, RCTL %#x (decodes to %d); want %d, LPE %v", c.mtu, size, rctl, rxBufSize(rctl), c.size, c.lpe)
		}
	}
}

// TestJumboFrames: with an MTU of 9000 the driver enables long packets
// with 16 KiB buffers, receives and transmits frames up to 9014 bytes
// whole, refuses longer ones, and drops a frame that spans buffers.
func TestJumboFrames(t *testing.T) {
	mem, err := dma.NewHost(0x10000000, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(mem, testMAC, true)
	d, err := Open(Config{Name: "e1000-0", Regs: m, DMA: mem, IRQ: m.line, MTU: 9000, Watchdog: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.MTU() != 9000 {
		t.Errorf("MTU %d", d.MTU())
	}
	if rctl := m.reg(RCTL); rctl&RctlLPE == 0 || rxBufSize(rctl) != 16384 {
		t.Errorf("RCTL %#x: want LPE and 16 KiB buffers", rctl)
	}
	if rx, tx := m.reg(RDLEN)/descSize, m.reg(TDLEN)/descSize; rx != 128 || tx != 64 {
		t.Errorf("default rings of %d and %d descriptors, want 128 and 64", rx, tx)
	}
	for _, n := range []int{9014, 1514, 60} {
		if err := d.Transmit(frame(n, n)); err != nil {
			t.Fatalf("Transmit %d bytes: %v", n, err)
		}
		if !m.inject(frame(n, n), 0, true) {
			t.Fatal("ring full")
		}
		if got := receive(t, d); !bytes.Equal(got, frame(n, n)) {
			t.Fatalf("received %d bytes, want the %d sent", len(got), n)
		}
	}
	if sent := m.frames(); len(sent) != 3 || !bytes.Equal(sent[0], frame(9014, 9014)) {
		t.Errorf("device sent %d frames", len(sent))
	}
	if err := d.Transmit(make([]byte, 9015)); !errors.Is(err, nic.ErrFrameSize) {
		t.Errorf("Transmit of 9015 bytes: %v", err)
	}
	// 20000 bytes take two 16 KiB buffers: dropped whole, counted once.
	if !m.inject(frame(20000, 1), 0, true) || !m.inject(frame(100, 2), 0, true) {
		t.Fatal("ring full")
	}
	if got := receive(t, d); !bytes.Equal(got, frame(100, 2)) {
		t.Fatalf("after the giant: %d bytes", len(got))
	}
	if c := d.Counters(); c.RxErrors != 1 {
		t.Errorf("RxErrors %d, want 1", c.RxErrors)
	}
	if _, err := Open(Config{Name: "x", Regs: m, DMA: mem, IRQ: m.line, MTU: MaxMTU + 1}); err == nil {
		t.Error("MTU above MaxMTU accepted")
	}
}

// TestStatisticsRegisters: missed frames and oversize frames are counted
// once each whether the device clears its statistics on read (the 8254x)
// or keeps CRCERRS, RXERRC and MPC as running totals (QEMU's e1000),
// however often the driver reads them.
func TestStatisticsRegisters(t *testing.T) {
	for _, running := range []bool{false, true} {
		t.Run(fmt.Sprintf("running=%v", running), func(t *testing.T) {
			d, m := openWatchdog(t, true, 0, -1)
			m.mu.Lock()
			m.runningStats = running
			m.mu.Unlock()
			add := func(mpc, roc uint32) {
				m.mu.Lock()
				m.regs[MPC] += mpc
				m.regs[ROC] += roc
				m.mu.Unlock()
			}
			for _, step := range []struct{ mpc, roc uint32 }{{0, 0}, {3, 1}, {0, 0}, {5, 0}, {1, 2}, {0, 0}} {
				add(step.mpc, step.roc)
				d.Service()
				d.Service()
			}
			if got := d.HW().Missed.Load(); got != 9 {
				t.Errorf("missed %d, want 9", got)
			}
			if got := d.HW().Oversize.Load(); got != 3 {
				t.Errorf("oversize %d, want 3", got)
			}
			if got := d.Counters().RxErrors; got != 3 {
				t.Errorf("RxErrors %d, want 3", got)
			}
		})
	}
}

// tcpPacket returns an Ethernet frame holding a TCP segment over IPv4
// with a timestamp option, payload at seq, flags as given, and correct
// checksums (which TransmitSegment must not rely on).
func tcpPacket(payload []byte, seq uint32, flags header.TCPFlags) []byte {
	const tcpLen = header.TCPMinimumSize + 12
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	f := make([]byte, nic.HeaderLen+header.IPv4MinimumSize+tcpLen+len(payload))
	copy(f, []byte{2, 0, 0, 0, 0, 2})
	copy(f[6:], testMAC[:])
	f[12], f[13] = 0x08, 0x00
	ip := header.IPv4(f[nic.HeaderLen:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), ID: 0xfffe, TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: 7800, DstPort: 40000, SeqNum: seq, AckNum: 1,
		DataOffset: tcpLen, Flags: flags, WindowSize: 4096})
	copy(tcp[header.TCPMinimumSize:], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9})
	copy(tcp[tcpLen:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
	tcp.SetChecksum(^tcp.CalculateChecksum(checksum.Checksum(payload, xsum)))
	return f
}

// TestTransmitSegment: a large TCP segment goes to the device as one
// context and a chain of data descriptors with one TDT write, and the
// device's segmentation (the model's, after the manual) yields frames of
// the MSS with valid IP and TCP checksums, IP IDs and sequence numbers in
// step, FIN and PSH on the last frame only, and the payload whole.
func TestTransmitSegment(t *testing.T) {
	const mss = 1448 // MTU 1500 less the IP, TCP and timestamp headers
	for _, n := range []int{1, mss, 3*mss + 7, 44*mss + 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			d, m := openWatchdog(t, true, 0, -1)
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			const seq = 0xffffff00 // wraps
			pkt := tcpPacket(payload, seq, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin)
			m.mu.Lock()
			start := len(m.writes)
			m.mu.Unlock()
			if err := d.TransmitSegment(pkt, mss); err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			tdt := 0
			for _, off := range m.writes[start:] {
				if off == TDT {
					tdt++
				}
			}
			errs := m.tsoErrors
			m.mu.Unlock()
			if tdt != 1 || len(errs) > 0 {
				t.Fatalf("%d TDT writes (want 1), device: %v", tdt, errs)
			}
			frames := m.frames()
			if want := (n + mss - 1) / mss; len(frames) != want {
				t.Fatalf("%d frames, want %d", len(frames), want)
			}
			var got []byte
			for i, f := range frames {
				ip := header.IPv4(f[nic.HeaderLen:])
				tcp := header.TCP(ip.Payload())
				last := i == len(frames)-1
				xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
				switch {
				case len(f) > nic.HeaderLen+1500 || int(ip.TotalLength()) != len(f)-nic.HeaderLen:
					t.Fatalf("frame %d: %d bytes, IP total length %d", i, len(f), ip.TotalLength())
				case !ip.IsChecksumValid():
					t.Fatalf("frame %d: bad IP header checksum", i)
				case ip.ID() != 0xfffe+uint16(i):
					t.Fatalf("frame %d: IP ID %#x", i, ip.ID())
				case checksum.Checksum(tcp, xsum) != 0xffff:
					t.Fatalf("frame %d: bad TCP checksum", i)
				case tcp.SequenceNumber() != uint32(seq+len(got)):
					t.Fatalf("frame %d: seq %#x, want %#x", i, tcp.SequenceNumber(), uint32(seq+len(got)))
				case (tcp.Flags()&(header.TCPFlagFin|header.TCPFlagPsh) != 0) != last:
					t.Fatalf("frame %d of %d: flags %v", i, len(frames), tcp.Flags())
				}
				got = append(got, tcp.Payload()...)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("payload differs")
			}
			if !bytes.Equal(pkt, tcpPacket(payload, seq, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin)) {
				t.Error("the caller's packet was changed")
			}
			d.reclaim()
			if free := d.freeSlots(); free != 63 {
				t.Errorf("%d free descriptors after the device finished, want 63", free)
			}
		})
	}
}

// TestTransmitSegmentRefuses: what is not a TCP segment over IPv4, too
// long, or cut by a wrong MSS is refused with ErrFrameSize; a ring
// without room for the whole chain gives ErrQueueFull and sends nothing
// of it.
func TestTransmitSegmentRefuses(t *testing.T) {
	d, m := openWatchdog(t, true, 0, -1)
	good := tcpPacket(make([]byte, 4000), 1, header.TCPFlagAck)
	udp := append([]byte(nil), good...)
	udp[nic.HeaderLen+9] = 17
	for _, c := range []struct {
		name string
		pkt  []byte
		mss  int
	}{
		{"udp", udp, 1448},
		{"arp", append([]byte{}, frame(60, 1)...), 1448},
		{"headers only", good[:nic.HeaderLen+20+32], 1448},
		{"truncated", good[:nic.HeaderLen+30], 1448},
		{"mss above the MTU", good, 1500},
		{"mss 0", good, 0},
		{"too long", tcpPacket(make([]byte, 70000), 1, header.TCPFlagAck), 1448},
	} {
		if err := d.TransmitSegment(c.pkt, c.mss); !errors.Is(err, nic.ErrFrameSize) {
			t.Errorf("%s: %v, want ErrFrameSize", c.name, err)
		}
	}
	m.mu.Lock()
	m.txHold = true
	m.mu.Unlock()
	big := tcpPacket(make([]byte, 64000), 1, header.TCPFlagAck) // 1 + 32 descriptors
	if err := d.TransmitSegment(big, 1448); err != nil {
		t.Fatal(err)
	}
	if err := d.TransmitSegment(big, 1448); !errors.Is(err, nic.ErrQueueFull) {
		t.Fatalf("second 33-descriptor chain on a 64-slot ring: %v", err)
	}
	m.complete()
	if n := len(m.frames()); n != (64000+1447)/1448 {
		t.Errorf("device sent %d frames, want those of one segment", n)
	}
}

// TestGiantSplitAcrossPasses: the device may write a giant's last piece
// after the driver has already taken its first piece and returned the
// descriptor; the last piece is still dropped, not delivered as a frame.
func TestGiantSplitAcrossPasses(t *testing.T) {
	d, m := open(t, true, 0)
	if !m.inject(frame(2000, 1), 0, false) {
		t.Fatal("ring full")
	}
	waitFor(t, "the first piece taken", func() bool { return m.reg(RDT) == 0 })
	for _, f := range [][]byte{frame(200, 2), frame(100, 3)} {
		if !m.inject(f, 0, true) {
			t.Fatal("ring full")
		}
	}
	if got, want := receive(t, d), frame(100, 3); !bytes.Equal(got, want) {
		t.Fatalf("got %x..., want %x...", got[:16], want[:16])
	}
	if c := d.Counters(); c.RxErrors != 1 || c.RxFrames != 1 {
		t.Errorf("RxErrors %d RxFrames %d, want 1 and 1", c.RxErrors, c.RxFrames)
	}
}

// TestCloseDuringTraffic: Close returns only once no transmit, no
// service pass and no watchdog look uses the rings, and none touches
// them afterwards (nictest.CloseDuringTraffic). The watchdog looks every
// 50 µs, so that it too is reading the rings when Close comes.
func TestCloseDuringTraffic(t *testing.T) {
	d, m := openWatchdog(t, true, 0, 50*time.Microsecond)
	mem, err := m.mem.Slice(m.mem.Base(), m.mem.Size())
	if err != nil {
		t.Fatal(err)
	}
	nictest.CloseDuringTraffic(t, d, mem, func() { m.inject(frame(100, 1), 0, true) }, frame(100, 0))
}
