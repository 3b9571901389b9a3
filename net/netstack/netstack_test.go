package netstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/doppel-ft/doppel/net/linktest"
	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/nictest"
)

// pair returns two stacks joined by an in-memory wire, at 10.9.0.1 and
// 10.9.0.2.
func pair(t testing.TB, cfg linktest.Config) (a, b *Stack, ea, eb *linktest.End) {
	t.Helper()
	ea, eb = linktest.Pair(cfg)
	var err error
	for i, st := range []**Stack{&a, &b} {
		if *st, err = New(); err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig([]string{"10.9.0.1/24", "10.9.0.2/24,gw=10.9.0.1"}[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (*st).Add([]*linktest.End{ea, eb}[i], c); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, ea, eb
}

var addrA = netip.MustParseAddrPort("10.9.0.1:7000")

// transfer sends n pseudo-random bytes from b to a over TCP and checks
// they arrive intact and in order.
func transfer(t testing.TB, a, b *Stack, n int) time.Duration {
	t.Helper()
	l, err := a.Listen(addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			errc <- err
			return
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := b.Dial(ctx, addrA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("received data differs from what was sent (%d bytes)", n)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish in 60 s")
	}
	return time.Since(start)
}

func TestTCPOverWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       linktest.Faults
		segment bool // the NIC segments TCP (host GSO)
	}{
		{"clean", linktest.Faults{}, false},
		{"loss-2%", linktest.Faults{Loss: 0.02, Seed: 1}, false},
		{"reorder-5%", linktest.Faults{Reorder: 0.05, Seed: 2}, false},
		{"loss+reorder+dup", linktest.Faults{Loss: 0.01, Reorder: 0.03, Duplicate: 0.01, Seed: 3}, false},
		{"tso", linktest.Faults{}, true},
		{"tso/loss+reorder+dup", linktest.Faults{Loss: 0.01, Reorder: 0.03, Duplicate: 0.01, Seed: 4}, true},
		{"corrupt-1%", linktest.Faults{Corrupt: 0.01, Seed: 5}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ea, eb := pair(t, linktest.Config{Faults: tc.f, Segment: tc.segment})
			transfer(t, a, b, 4<<20)
			if got := eb.Segments(); tc.segment != (got > 0) {
				t.Fatalf("%d segments handed to the NIC to cut (NIC segments: %v)", got, tc.segment)
			}
			// Every corrupted frame is counted and dropped by the
			// receiving link endpoint (the stack no longer checks), and
			// TCP recovers it.
			corrupted := ea.Corrupted() + eb.Corrupted()
			if ck := a.TCP().ChecksumErrors + b.TCP().ChecksumErrors; ck != corrupted || tc.f.Corrupt > 0 && ck == 0 {
				t.Fatalf("%d checksum errors counted, %d frames corrupted", ck, corrupted)
			}
			lost, reord, dup := eb.Faulted()
			la, ra, da := ea.Faulted()
			lost, reord, dup = lost+la, reord+ra, dup+da
			t.Logf("wire lost %d, reordered %d, duplicated %d; retransmits %d", lost, reord, dup, b.TCP().Retransmits)
			if tc.f.Loss > 0 && (lost == 0 || b.TCP().Retransmits == 0) {
				t.Fatalf("loss asked but lost=%d retransmits=%d", lost, b.TCP().Retransmits)
			}
			if tc.f.Reorder > 0 && reord == 0 {
				t.Fatal("reordering asked but no frame was reordered")
			}
		})
	}
}

// TestBackPressure: a tiny ring and a slow wire make Transmit refuse with
// ErrQueueFull; the endpoint waits for TxReady instead of losing frames.
func TestBackPressure(t *testing.T) {
	a, b, _, eb := pair(t, linktest.Config{Ring: 4, BytesPerSec: 20e6})
	transfer(t, a, b, 1<<20)
	if eb.Counters().TxQueueFull == 0 {
		t.Fatal("the ring never filled: the test did not exercise back-pressure")
	}
	if d := eb.Counters().TxQueueFull; b.Interfaces()[0].Link.Stats().TxWaits == 0 {
		t.Fatalf("ring full %d times but the endpoint never waited", d)
	}
	if dropped := b.Interfaces()[0].Link.Stats().TxDropped; dropped != 0 {
		t.Fatalf("%d frames dropped at the ring despite back-pressure", dropped)
	}
}

func TestDialNoListener(t *testing.T) {
	_, b, _, _ := pair(t, linktest.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Dial(ctx, netip.MustParseAddrPort("10.9.0.1:9")); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestUnreachableTimesOut(t *testing.T) {
	_, b, _, _ := pair(t, linktest.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Dial(ctx, netip.MustParseAddrPort("10.9.0.77:9")) // nobody answers ARP
	if err == nil {
		t.Fatal("dial to an absent host succeeded")
	}
}

// rawWire measures the wire alone: probe frames of MTU+14 bytes sent from
// b to a through the link endpoints (no IP, no TCP), received rate.
func rawWire(tb testing.TB, a, b *Stack, n int) float64 {
	la, lb := a.Interfaces()[0].Link, b.Interfaces()[0].Link
	la.TakeProbe()
	frames := n / (int(lb.NIC().MTU()) + 14)
	if _, err := lb.SendProbe(la.LinkAddress(), frames); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the last frames cross the wire
	p := la.TakeProbe()
	// An unpaced wire outruns the receiver's queue and drops frames (as a
	// NIC would): the rate is that of the frames received.
	if p.Frames < 2 {
		tb.Fatalf("only %d of %d probe frames arrived", p.Frames, frames)
	}
	return p.MBps() * 1e6
}

// TestProbe checks the probe measures a paced wire: never faster than its
// pace (a slower figure only means a loaded machine, so it is not failed:
// speed is measured by BenchmarkGoodput, not asserted by a timed test).
func TestProbe(t *testing.T) {
	a, b, _, _ := pair(t, linktest.Config{BytesPerSec: 50e6})
	r := rawWire(t, a, b, 2<<20)
	if r <= 0 || r > 75e6 {
		t.Fatalf("probe measured %.1f MB/s on a 50 MB/s wire", r/1e6)
	}
	if p := b.Interfaces()[0].Link.TakeProbe(); p.Frames != 0 {
		t.Fatalf("the sender counted %d probe frames of its own", p.Frames)
	}
	t.Logf("probe: %.1f MB/s on a 50 MB/s wire", r/1e6)
}

// BenchmarkGoodput compares TCP goodput over the stack with the raw frame
// throughput of the same wire (probe frames of the same MTU) in the same
// run (the goal is a ratio ≥ 0.8), for an unlimited in-memory wire and one
// paced at 100 MB/s, with receive coalescing (link.Endpoint's GRO) and
// segmentation offload (GSO) on and off, and with standard and long frames
// (the stack's cost is per segment).
func BenchmarkGoodput(b *testing.B) {
	for _, bench := range []struct {
		name     string
		rate     float64
		gro, gso bool
		mtu      int
		tso      bool
	}{
		{"unlimited/gro", 0, true, true, 1500, false}, {"unlimited/nogro", 0, false, true, 1500, false},
		{"unlimited/gro/tso", 0, true, true, 1500, true}, {"100MBps/gro/tso", 100e6, true, true, 1500, true},
		{"100MBps/gro", 100e6, true, true, 1500, false}, {"100MBps/nogro", 100e6, false, true, 1500, false},
		{"100MBps/nogro/nogso", 100e6, false, false, 1500, false},
		{"unlimited/gro/mtu9000", 0, true, true, 9000, false}, {"100MBps/gro/mtu9000", 100e6, true, true, 9000, false},
	} {
		b.Run(bench.name, func(b *testing.B) {
			const n = 32 << 20
			cfg := linktest.Config{BytesPerSec: bench.rate, MTU: bench.mtu, Segment: bench.tso}
			var good, raw float64
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				x, y, _, _ := pair(b, cfg)
				for _, st := range []*Stack{x, y} {
					st.Interfaces()[0].Link.SetGRO(bench.gro)
					st.Interfaces()[0].Link.SetGSO(bench.gso)
				}
				raw += rawWire(b, x, y, n)
				c0 := cpuTime(b)
				good += float64(n) / transfer(b, x, y, n).Seconds()
				cpu += cpuTime(b) - c0
			}
			b.SetBytes(n)
			b.ReportMetric(raw/float64(b.N)/1e6, "raw-MB/s")
			b.ReportMetric(good/float64(b.N)/1e6, "tcp-MB/s")
			b.ReportMetric(good/raw, "ratio")
			// CPU time per MB of TCP: the cost, which load does not change
			// as much as it changes the rates (both stacks, the wire and
			// the test's data generation and hashing included).
			b.ReportMetric(cpu.Seconds()*1e3/float64(b.N)/(n/1e6), "tcp-cpu-ms/MB")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAnnounceOnAddress: giving an interface its address broadcasts an
// ARP announcement of it (RFC 5227 section 3), which learning switches
// such as Bochs's bxhub need before they deliver unicast frames to it.
func TestAnnounceOnAddress(t *testing.T) {
	a, b := nictest.Pair(nictest.Config{})
	defer b.Close()
	st, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := ParseConfig("10.9.0.7/24")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Add(a, c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := b.Receive(ctx)
	if err != nil {
		t.Fatalf("no frame from the interface: %v", err)
	}
	eth := header.Ethernet(f)
	if len(f) < header.EthernetMinimumSize+header.ARPSize || eth.DestinationAddress() != header.EthernetBroadcastAddress ||
		eth.Type() != header.ARPProtocolNumber {
		t.Fatalf("first frame is not a broadcast ARP: %x", f)
	}
	arp := header.ARP(f[header.EthernetMinimumSize:])
	mac := a.MAC()
	ip := []byte{10, 9, 0, 7}
	if !arp.IsValid() || arp.Op() != header.ARPRequest || !bytes.Equal(arp.HardwareAddressSender(), mac[:]) ||
		!bytes.Equal(arp.ProtocolAddressSender(), ip) || !bytes.Equal(arp.ProtocolAddressTarget(), ip) {
		t.Fatalf("not an announcement of 10.9.0.7 by %x: %x", mac, f)
	}
}

// TestLimitTCPBuffers: with small buffers TCP still carries data intact;
// a limit below the minimum is refused.
func TestLimitTCPBuffers(t *testing.T) {
	a, b, _, _ := pair(t, linktest.Config{})
	for _, st := range []*Stack{a, b} {
		if err := st.LimitTCPBuffers(64 << 10); err != nil {
			t.Fatal(err)
		}
	}
	transfer(t, a, b, 4<<20)
	if err := a.LimitTCPBuffers(100); err == nil {
		t.Error("a 100-byte limit was accepted")
	}
}

// TestTCPOutlivesOutage: the FT engine, not TCP, decides when a peer is
// lost. A wire silent for 5 s (longer than TCP's default 15 retransmissions
// at the 200 ms backoff cap) must not end a connection: the data written
// during the outage arrives once the wire is back.
func TestTCPOutlivesOutage(t *testing.T) {
	a, b, ea, eb := pair(t, linktest.Config{})
	l, err := a.Listen(addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.Dial(ctx, addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var srv net.Conn
	select {
	case srv = <-accepted:
		defer srv.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}

	ea.SetLinkDown(true)
	eb.SetLinkDown(true)
	msg := []byte("written during the outage")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	time.Sleep(5 * time.Second)
	ea.SetLinkDown(false)
	eb.SetLinkDown(false)

	srv.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Fatalf("read after the outage: %v (the connection did not survive)", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %q, want %q", got, msg)
	}
}

// stallingEnd is a wire end whose receiver stops for pause after every
// `every` frames, as a descheduled receive goroutine does: frames pile up
// in the receive queue until it overflows and drops a burst. With
// untilDrop it stays stopped past pause (up to untilDrop) until the queue
// has overflowed: how many frames the sender has in flight when a stall
// begins depends on how its window grew, and so on the host's timing.
type stallingEnd struct {
	*linktest.End
	every     int64
	pause     time.Duration
	untilDrop time.Duration
	n         atomic.Int64
}

func (s *stallingEnd) Receive(ctx context.Context) ([]byte, error) {
	if s.n.Add(1)%s.every == 0 {
		dropped := s.Counters().RxDropped
		time.Sleep(s.pause)
		for end := time.Now().Add(s.untilDrop); s.Counters().RxDropped == dropped && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	return s.End.Receive(ctx)
}

// stallingPair is pair with a's receiver stalling and a small receive
// queue, so that a bulk transfer from b loses bursts of frames.
func stallingPair(tb testing.TB, queue int, rec *tcpip.TCPRecovery, untilDrop time.Duration) (a, b *Stack, ea *linktest.End) {
	tb.Helper()
	ea, eb := linktest.Pair(linktest.Config{RxQueue: queue})
	var err error
	for i, st := range []**Stack{&a, &b} {
		if *st, err = New(); err != nil {
			tb.Fatal(err)
		}
		if rec != nil {
			if err := (*st).s.SetTransportProtocolOption(tcp.ProtocolNumber, rec); err != nil {
				tb.Fatal(err)
			}
		}
		c, _ := ParseConfig([]string{"10.9.0.1/24", "10.9.0.2/24"}[i])
		n := []nic.NIC{&stallingEnd{End: ea, every: 3000, pause: 100 * time.Millisecond, untilDrop: untilDrop}, eb}[i]
		if _, err := (*st).Add(n, c); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b, ea
}

// TestRecoversFromRxOverflow: bursts lost to a receive queue that
// overflowed while its receiver stalled are recovered, the data intact,
// by the loss recovery the stack is configured with. Each stall lasts
// until the queue of 32 frames has overflowed (CI once saw a queue of 128
// outlast every 100 ms stall of a transfer, the sender's window small).
func TestRecoversFromRxOverflow(t *testing.T) {
	a, b, ea := stallingPair(t, 32, nil, 2*time.Second)
	var rec tcpip.TCPRecovery
	if err := b.s.TransportProtocolOption(tcp.ProtocolNumber, &rec); err != nil || rec != recovery {
		t.Fatalf("TCP recovery %#x (%v), want %#x", rec, err, recovery)
	}
	transfer(t, a, b, 16<<20)
	if ea.Counters().RxDropped == 0 {
		t.Fatal("the receive queue never overflowed: the test did not exercise loss recovery")
	}
	t.Logf("%d frames dropped at the receiver; sender %+v", ea.Counters().RxDropped, b.TCP())
}

// BenchmarkStallRecovery: a 32 MiB transfer to a receiver that stalls for
// 100 ms every 3000 frames behind receive queues of 256 frames (a NIC's
// ring) and 1024 (linktest's default), with RACK (gVisor's default) and
// with the SACK recovery the stack uses. The stalls alone cost about
// 0.8 s per transfer; the longer the burst lost, the more RACK adds.
func BenchmarkStallRecovery(b *testing.B) {
	for _, bench := range []struct {
		name  string
		queue int
		rec   tcpip.TCPRecovery
	}{
		{"queue256/rack", 256, tcpip.TCPRACKLossDetection}, {"queue256/sack", 256, 0},
		{"queue1024/rack", 1024, tcpip.TCPRACKLossDetection}, {"queue1024/sack", 1024, 0},
	} {
		b.Run(bench.name, func(b *testing.B) {
			const n = 32 << 20
			var dropped, timeouts uint64
			for i := 0; i < b.N; i++ {
				x, y, ex := stallingPair(b, bench.queue, &bench.rec, 0)
				transfer(b, x, y, n)
				dropped += ex.Counters().RxDropped
				timeouts += y.TCP().Timeouts
			}
			b.SetBytes(n)
			b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
			b.ReportMetric(float64(timeouts)/float64(b.N), "timeouts/op")
		})
	}
}
